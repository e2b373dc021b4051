import { describe, expect, it } from '@jest/globals';
import { inventoryLabelValue } from './labels.js';

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

describe('inventoryLabelValue', () => {
  it('uses a short label-safe id as it is', () => {
    expect(inventoryLabelValue('agent1.gitops-project')).toBe('agent1.gitops-project');
  });

  it.each(['agent1/group/project', 'x'.repeat(64), 'a/' + 'long-name-'.repeat(20), '///'])(
    'turns %j into a valid label value of at most 63 characters',
    (id) => {
      const v = inventoryLabelValue(id);
      expect(v.length).toBeLessThanOrEqual(63);
      expect(v).toMatch(LABEL_VALUE);
      expect(inventoryLabelValue(id)).toBe(v);
    },
  );

  it('keeps distinct ids distinct after hashing', () => {
    expect(inventoryLabelValue('agent1/a/b')).not.toBe(inventoryLabelValue('agent1/a_b'));
  });
});
