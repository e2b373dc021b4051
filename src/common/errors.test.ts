import { describe, expect, it } from '@jest/globals';
import { GitopsError, problemOf, UserError } from './errors.js';

describe('problemOf', () => {
  const id = 'Deployment/default/nginx';
  it.each([
    [
      'a GitopsError keeps its code',
      new UserError('KUBE_INVALID', 'spec.replicas: must be >= 0'),
      undefined,
      { code: 'KUBE_INVALID', message: 'spec.replicas: must be >= 0' },
    ],
    [
      'anything else gets the fallback',
      new Error('EACCES: permission denied'),
      undefined,
      { code: 'APPLY_ERROR', message: 'EACCES: permission denied' },
    ],
    ['a thrown string too', 'boom', undefined, { code: 'APPLY_ERROR', message: 'boom' }],
    [
      'an object id prefixes the message',
      new Error('timed out'),
      id,
      { code: 'APPLY_ERROR', message: `${id}: timed out`, object: id },
    ],
    [
      'once',
      new GitopsError('retryable', 'KUBE_CONFLICT', `${id}: conflict`),
      id,
      { code: 'KUBE_CONFLICT', message: `${id}: conflict`, object: id },
    ],
  ])('%s', (_name, err, objectId, expected) => {
    expect(problemOf(err, 'APPLY_ERROR', objectId)).toEqual(expected);
  });
});
