import { describe, expect, it } from '@jest/globals';
import { leaseDecision, leaseName, microTime } from './leader.js';

describe('leaseDecision', () => {
  const now = Date.parse('2026-11-25T10:00:30Z');
  it.each([
    ['no Lease spec at all', undefined, 'acquire'],
    [
      'a released Lease (empty holder)',
      { holderIdentity: '', renewTime: '2026-11-25T10:00:29.000000Z', leaseDurationSeconds: 15 },
      'acquire',
    ],
    [
      'our own Lease',
      { holderIdentity: 'me', renewTime: '2026-11-25T09:00:00.000000Z', leaseDurationSeconds: 15 },
      'renew',
    ],
    [
      'a fresh Lease of another replica',
      { holderIdentity: 'other', renewTime: '2026-11-25T10:00:20.000000Z', leaseDurationSeconds: 15 },
      'standby',
    ],
    [
      'an expired Lease of a dead replica',
      { holderIdentity: 'other', renewTime: '2026-11-25T10:00:14.000000Z', leaseDurationSeconds: 15 },
      'acquire',
    ],
    ['a Lease with no renew time', { holderIdentity: 'other' }, 'acquire'],
  ])('on %s decides %s', (_label, spec, expected) => {
    expect(leaseDecision(spec, 'me', now)).toBe(expected);
  });
});

describe('microTime', () => {
  it('writes the six fractional digits the API server requires', () => {
    expect(microTime(Date.parse('2026-11-25T10:00:30.123Z'))).toBe('2026-11-25T10:00:30.123000Z');
  });
});

describe('leaseName', () => {
  it('is the same for every replica of an agent and a valid object name', () => {
    expect(leaseName('0123456789abcdef0123456789abcdef')).toBe('gitops-agent-0123456789abcdef0123456789abcdef');
  });
});
