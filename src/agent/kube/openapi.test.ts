import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../common/logger.js';
import type { KubeClient } from './client.js';
import { OpenApi } from './openapi.js';

/** A tiny apps/v1 document: Deployment's containers merge by name, its ports by containerPort. */
const APPS_V1 = {
  components: {
    schemas: {
      'io.k8s.api.apps.v1.Deployment': {
        'x-kubernetes-group-version-kind': [{ group: 'apps', version: 'v1', kind: 'Deployment' }],
        properties: {
          spec: { properties: { template: { properties: { spec: { $ref: '#/components/schemas/PodSpec' } } } } },
        },
      },
      PodSpec: {
        properties: {
          containers: {
            type: 'array',
            'x-kubernetes-list-type': 'map',
            'x-kubernetes-list-map-keys': ['name'],
            items: { $ref: '#/components/schemas/Container' },
          },
        },
      },
      Container: {
        properties: {
          ports: { type: 'array', 'x-kubernetes-patch-merge-key': 'containerPort', items: { type: 'object' } },
        },
      },
      'io.k8s.api.apps.v1.DaemonSet': {
        'x-kubernetes-group-version-kind': [{ group: 'apps', version: 'v1', kind: 'DaemonSet' }],
        properties: {
          spec: { properties: { template: { properties: { spec: { $ref: '#/components/schemas/PodSpec' } } } } },
        },
      },
    },
  },
};

/** Answers the two OpenAPI requests the way the API server does and counts them. */
function serverStub(): { client: KubeClient; requests: string[] } {
  const requests: string[] = [];
  const client = {
    async request(_method: string, p: string): Promise<unknown> {
      requests.push(p);
      if (p === '/openapi/v3')
        return { paths: { 'apis/apps/v1': { serverRelativeURL: '/openapi/v3/apis/apps/v1?hash=ABC123' } } };
      return APPS_V1;
    },
  } as unknown as KubeClient;
  return { client, requests };
}

function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n'))
        if (l) lines.push(JSON.parse(l) as { level: string; msg: string });
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gitops-openapi-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('OpenApi', () => {
  it('still gives list keys when the state dir cannot be written, and warns once', async () => {
    await writeFile(path.join(dir, 'not-a-dir'), 'a file where the state dir should be');
    const { client } = serverStub();
    const { logger, lines } = capture();
    const openapi = new OpenApi(client, path.join(dir, 'not-a-dir', 'engine'), logger);
    const keys = await openapi.listKeysFor({ group: 'apps', version: 'v1', kind: 'Deployment' });
    expect(keys.get('/spec/template/spec/containers')).toEqual(['name']);
    openapi.invalidate();
    await openapi.listKeysFor({ group: 'apps', version: 'v1', kind: 'Deployment' });
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      'cannot cache OpenAPI documents: each restart downloads them again',
    ]);
  });

  it('downloads a document once per content hash, also across restarts with a state dir, for every kind it describes', async () => {
    const stateDir = path.join(dir, 'state');
    const first = serverStub();
    const a = new OpenApi(first.client, stateDir);
    expect(
      (await a.listKeysFor({ group: 'apps', version: 'v1', kind: 'Deployment' })).get(
        '/spec/template/spec/containers/*/ports',
      ),
    ).toEqual(['containerPort']);
    expect(
      (await a.listKeysFor({ group: 'apps', version: 'v1', kind: 'DaemonSet' })).get('/spec/template/spec/containers'),
    ).toEqual(['name']);
    expect(first.requests.filter((r) => r !== '/openapi/v3')).toHaveLength(1);
    expect(await readdir(path.join(stateDir, 'openapi'))).toEqual(['ABC123.json']);

    const restarted = serverStub();
    const b = new OpenApi(restarted.client, stateDir);
    expect(
      (await b.listKeysFor({ group: 'apps', version: 'v1', kind: 'Deployment' })).get('/spec/template/spec/containers'),
    ).toEqual(['name']);
    expect(restarted.requests).toEqual(['/openapi/v3']);
    expect((await b.listKeysFor({ group: 'apps', version: 'v1', kind: 'StatefulSet' })).size).toBe(0);
  });
});
