import { describe, expect, it } from '@jest/globals';
import { legacyGroupVersions, servedOf, type ServedVersion } from './discovery.js';

const hpa = (version: string): ServedVersion => ({
  group: 'autoscaling',
  version,
  resources: [{ kind: 'HorizontalPodAutoscaler', plural: 'horizontalpodautoscalers', namespaced: true }],
});

describe('servedOf', () => {
  it('prefers the first version listed that serves a kind, and keeps every version', () => {
    const served = servedOf([hpa('v2'), hpa('v1')]);
    expect(served.preferred.get('autoscaling/HorizontalPodAutoscaler')?.version).toBe('v2');
    expect([...served.byGvk.keys()]).toEqual([
      'autoscaling/v2/HorizontalPodAutoscaler',
      'autoscaling/v1/HorizontalPodAutoscaler',
    ]);
  });

  it('falls back to the next version when the preferred one lacks the kind', () => {
    const onlyOld: ServedVersion = {
      group: 'example.com',
      version: 'v1beta1',
      resources: [{ kind: 'Old', plural: 'olds', namespaced: false }],
    };
    const served = servedOf([{ group: 'example.com', version: 'v1', resources: [] }, onlyOld]);
    expect(served.preferred.get('example.com/Old')).toEqual({
      group: 'example.com',
      version: 'v1beta1',
      kind: 'Old',
      plural: 'olds',
      namespaced: false,
    });
  });
});

describe('legacyGroupVersions', () => {
  it("walks each group's preferredVersion first, whatever order the versions are listed in", () => {
    const gvs = legacyGroupVersions(
      { versions: ['v1'] },
      {
        groups: [
          {
            name: 'autoscaling',
            versions: [{ version: 'v1' }, { version: 'v2' }],
            preferredVersion: { version: 'v2' },
          },
        ],
      },
    );
    expect(gvs.map((g) => g.path)).toEqual(['/api/v1', '/apis/autoscaling/v2', '/apis/autoscaling/v1']);
  });

  it('keeps the listed order without a preferredVersion', () => {
    expect(
      legacyGroupVersions({}, { groups: [{ name: 'g', versions: [{ version: 'v2' }, { version: 'v1' }] }] }).map(
        (g) => g.version,
      ),
    ).toEqual(['v2', 'v1']);
  });
});
