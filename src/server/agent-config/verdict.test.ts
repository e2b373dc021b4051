import { describe, expect, it } from '@jest/globals';
import { parseAgentConfig } from '../config.js';

/*
 * GitLab's verdict, file by file: each case is a config.yaml written from GitLab v16.5's schema
 * (agentcfg.proto) to try one key or one rule, and the verdict is what GitLab's own code said
 * about it: kas's fetchConfiguration path (sigs.k8s.io/yaml YAMLToJSON, protojson.Unmarshal into
 * ConfigurationFile, ValidateAll) built from the gitlab-agent sources of that release and run over
 * these files. This product must agree on every one.
 */
const CASES: readonly [name: string, yaml: string, gitlab: 'accepts' | 'rejects'][] = [
  ['empty file', '', 'accepts'],
  ['only comments', '# nothing yet\n', 'accepts'],
  ['gitops null', 'gitops:\n', 'accepts'],
  ['manifest_projects null', 'gitops:\n  manifest_projects:\n', 'accepts'],
  ['manifest_projects empty', 'gitops:\n  manifest_projects: []\n', 'accepts'],
  [
    'seed project',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    default_namespace: apps\n    paths:\n    - glob: /manifests/**/*.yaml\n',
    'accepts',
  ],
  ['id left empty (the config project)', 'gitops:\n  manifest_projects:\n  - id:\n', 'accepts'],
  ['id empty string', 'gitops:\n  manifest_projects:\n  - id: ""\n', 'rejects'],
  ['id a number', 'gitops:\n  manifest_projects:\n  - id: 123\n', 'rejects'],
  ['id quoted number', 'gitops:\n  manifest_projects:\n  - id: "123/456"\n', 'accepts'],
  ['null list item', 'gitops:\n  manifest_projects:\n  - null\n', 'rejects'],
  ['project without keys', 'gitops:\n  manifest_projects:\n  - {}\n', 'accepts'],
  ['duration 3600s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 3600s\n', 'accepts'],
  ['duration 1.5s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 1.5s\n', 'accepts'],
  ['duration .5s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: .5s\n', 'accepts'],
  ['duration 5.s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 5.s\n', 'accepts'],
  ['duration 0s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune_timeout: 0s\n', 'accepts'],
  ['duration -1s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune_timeout: -1s\n', 'accepts'],
  ['duration 1h', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 1h\n', 'rejects'],
  ['duration 90m', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 90m\n', 'rejects'],
  ['duration 1h30m', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 1h30m\n', 'rejects'],
  ['duration 500ms', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune_timeout: 500ms\n', 'rejects'],
  [
    'duration bare number',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 3600\n',
    'rejects',
  ],
  [
    'duration quoted bare number',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: "3600"\n',
    'rejects',
  ],
  ['duration 01s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 01s\n', 'rejects'],
  ['duration 1S', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 1S\n', 'rejects'],
  ['duration 1e3s', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 1e3s\n', 'rejects'],
  [
    'duration ten nanosecond digits',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 1.0000000001s\n',
    'rejects',
  ],
  [
    'duration at the range limit',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 315576000000s\n',
    'accepts',
  ],
  [
    'duration over the range',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout: 315576000001s\n',
    'rejects',
  ],
  ['duration null', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timeout:\n', 'accepts'],
  [
    'dry_run_strategy none',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    dry_run_strategy: none\n',
    'accepts',
  ],
  [
    'dry_run_strategy client',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    dry_run_strategy: client\n',
    'accepts',
  ],
  [
    'dry_run_strategy server',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    dry_run_strategy: server\n',
    'accepts',
  ],
  ['dry_run_strategy empty', 'gitops:\n  manifest_projects:\n  - id: group/app\n    dry_run_strategy: ""\n', 'accepts'],
  [
    'dry_run_strategy Server',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    dry_run_strategy: Server\n',
    'rejects',
  ],
  [
    'dry_run_strategy true',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    dry_run_strategy: true\n',
    'rejects',
  ],
  ['prune true', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: true\n', 'accepts'],
  ['prune yes', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: yes\n', 'accepts'],
  ['prune no', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: no\n', 'accepts'],
  ['prune on', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: on\n', 'accepts'],
  ['prune off', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: off\n', 'accepts'],
  ['prune y', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: y\n', 'accepts'],
  ['prune N', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: N\n', 'accepts'],
  ['prune True', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: True\n', 'accepts'],
  ['prune quoted', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: "true"\n', 'rejects'],
  ['prune 1', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune: 1\n', 'rejects'],
  ['prune null', 'gitops:\n  manifest_projects:\n  - id: group/app\n    prune:\n', 'accepts'],
  [
    'prune_propagation_policy orphan',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    prune_propagation_policy: orphan\n',
    'accepts',
  ],
  [
    'prune_propagation_policy background',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    prune_propagation_policy: background\n',
    'accepts',
  ],
  [
    'prune_propagation_policy empty',
    "gitops:\n  manifest_projects:\n  - id: group/app\n    prune_propagation_policy: ''\n",
    'accepts',
  ],
  [
    'prune_propagation_policy Orphan',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    prune_propagation_policy: Orphan\n',
    'rejects',
  ],
  [
    'inventory_policy adopt_all',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    inventory_policy: adopt_all\n',
    'accepts',
  ],
  [
    'inventory_policy adopt_if_no_inventory',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    inventory_policy: adopt_if_no_inventory\n',
    'accepts',
  ],
  ['inventory_policy empty', 'gitops:\n  manifest_projects:\n  - id: group/app\n    inventory_policy: ""\n', 'accepts'],
  [
    'inventory_policy adopt-all',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    inventory_policy: adopt-all\n',
    'rejects',
  ],
  [
    'default_namespace empty',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    default_namespace: ""\n',
    'accepts',
  ],
  [
    'default_namespace number',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    default_namespace: 0x1F\n',
    'rejects',
  ],
  ['paths empty list', 'gitops:\n  manifest_projects:\n  - id: group/app\n    paths: []\n', 'accepts'],
  ['paths null', 'gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n', 'accepts'],
  ['paths null item', 'gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - null\n', 'rejects'],
  ['glob empty', 'gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - glob: ""\n', 'rejects'],
  ['glob missing', 'gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - {}\n', 'rejects'],
  [
    'path a string',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - /manifests/*.yaml\n',
    'rejects',
  ],
  ['glob number', 'gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - glob: 5\n', 'rejects'],
  ['ref branch', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      branch: main\n', 'accepts'],
  ['ref tag', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      tag: v1.0.0\n', 'accepts'],
  ['ref tag unquoted float', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      tag: 1.0\n', 'rejects'],
  [
    'ref commit full',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      commit: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n',
    'accepts',
  ],
  [
    'ref commit short',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      commit: abc1234\n',
    'accepts',
  ],
  [
    'ref commit uppercase',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      commit: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n',
    'accepts',
  ],
  ['ref empty', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref: {}\n', 'rejects'],
  ['ref null', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n', 'accepts'],
  [
    'ref two keys',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      branch: main\n      tag: v1\n',
    'rejects',
  ],
  ['ref branch null', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      branch:\n', 'rejects'],
  ['ref branch empty', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      branch: ""\n', 'rejects'],
  ['ref unknown key', 'gitops:\n  manifest_projects:\n  - id: group/app\n    ref:\n      sha: abc\n', 'rejects'],
  ['unknown project key', 'gitops:\n  manifest_projects:\n  - id: group/app\n    namespace: apps\n', 'rejects'],
  ['misspelt key', 'gitops:\n  manifest_projects:\n  - id: group/app\n    reconcile_timout: 3600s\n', 'rejects'],
  [
    'dash instead of underscore',
    'gitops:\n  manifest_projects:\n  - id: group/app\n    default-namespace: apps\n',
    'rejects',
  ],
  ['manifest_projects at the top', 'manifest_projects:\n- id: group/app\n', 'rejects'],
  ['gitops a list', 'gitops:\n- id: group/app\n', 'rejects'],
  ['file a list', '- gitops\n', 'rejects'],
  ['file a scalar', 'hello\n', 'rejects'],
  ['charts', 'gitops:\n  charts: []\n', 'rejects'],
  ['starboard', 'starboard:\n  vulnerability_report:\n    namespaces: [default]\n', 'rejects'],
  ['cilium', 'cilium:\n  hubble_relay_address: x\n', 'rejects'],
  ['unknown section', 'gitlab:\n  x: 1\n', 'rejects'],
  [
    'merge key',
    'gitops:\n  manifest_projects:\n  - &base\n    id: group/a\n    prune: false\n  - <<: *base\n    id: group/b\n',
    'accepts',
  ],
  [
    'hidden anchor at the top',
    '.base: &b\n  prune: false\ngitops:\n  manifest_projects:\n  - <<: *b\n    id: group/a\n',
    'rejects',
  ],
  ['duplicate key, last wins', 'gitops:\n  manifest_projects:\n  - id: group/a\n    id: group/b\n', 'accepts'],
  ['two documents', 'gitops: {}\n---\nnot: [valid\n', 'accepts'],
  ['tab indentation', 'gitops:\n\tmanifest_projects: []\n', 'rejects'],
  ['yaml syntax error', 'gitops: [\n', 'rejects'],
  ['observability level debug', 'observability:\n  logging:\n    level: debug\n', 'accepts'],
  ['observability level number', 'observability:\n  logging:\n    level: 1\n', 'accepts'],
  ['observability level INFO', 'observability:\n  logging:\n    level: INFO\n', 'rejects'],
  ['observability level empty', 'observability:\n  logging:\n    level: ""\n', 'rejects'],
  ['observability level trace', 'observability:\n  logging:\n    level: trace\n', 'rejects'],
  ['observability grpc_level', 'observability:\n  logging:\n    grpc_level: warn\n', 'accepts'],
  [
    'google_profiler',
    'observability:\n  google_profiler:\n    enabled: true\n    project_id: p\n    credentials_file: /x\n    debug_logging: no\n',
    'accepts',
  ],
  ['google_profiler project_id number', 'observability:\n  google_profiler:\n    project_id: 12\n', 'rejects'],
  ['observability unknown', 'observability:\n  metrics: {}\n', 'rejects'],
  ['ci_access project', 'ci_access:\n  projects:\n  - id: group/app\n', 'accepts'],
  [
    'ci_access group with environments',
    'ci_access:\n  groups:\n  - id: group\n    default_namespace: ci\n    environments: [production, "review/*"]\n',
    'accepts',
  ],
  [
    'ci_access access_as agent',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      agent: {}\n',
    'accepts',
  ],
  [
    'ci_access access_as ci_job',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      ci_job: {}\n',
    'accepts',
  ],
  ['ci_access access_as empty', 'ci_access:\n  projects:\n  - id: group/app\n    access_as: {}\n', 'rejects'],
  [
    'ci_access access_as agent null',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      agent:\n',
    'rejects',
  ],
  [
    'ci_access impersonate',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      impersonate:\n        username: bob\n        groups: [devs]\n        uid: "1"\n        extra:\n        - key: k\n          val: [v]\n',
    'accepts',
  ],
  [
    'ci_access impersonate without username',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      impersonate: {groups: [devs]}\n',
    'rejects',
  ],
  [
    'ci_access impersonate extra without val',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      impersonate:\n        username: bob\n        extra:\n        - key: k\n',
    'rejects',
  ],
  [
    'ci_access two access_as',
    'ci_access:\n  projects:\n  - id: group/app\n    access_as:\n      agent: {}\n      ci_job: {}\n',
    'rejects',
  ],
  ['ci_access id empty', 'ci_access:\n  projects:\n  - id: ""\n', 'rejects'],
  ['ci_access default-namespace', 'ci_access:\n  projects:\n  - id: group/app\n    default-namespace: ci\n', 'rejects'],
  [
    'ci_access environments empty string',
    'ci_access:\n  projects:\n  - id: group/app\n    environments: [""]\n',
    'rejects',
  ],
  ['user_access agent', 'user_access:\n  access_as:\n    agent: {}\n  projects:\n  - id: group/app\n', 'accepts'],
  ['user_access user', 'user_access:\n  access_as:\n    user: {}\n  groups:\n  - id: group\n', 'accepts'],
  ['user_access both', 'user_access:\n  access_as:\n    user: {}\n    agent: {}\n', 'rejects'],
  ['user_access access_as empty', 'user_access:\n  access_as: {}\n', 'rejects'],
  ['user_access without access_as', 'user_access:\n  projects:\n  - id: group/app\n', 'accepts'],
  [
    'flux webhook url',
    'flux:\n  webhook_receiver_url: http://webhook-receiver.flux-system.svc.cluster.local\n',
    'accepts',
  ],
  ['flux enabled', 'flux:\n  enabled: false\n', 'rejects'],
  ['flux empty', 'flux: {}\n', 'accepts'],
  [
    'remote_development',
    'remote_development:\n  enabled: true\n  dns_zone: workspaces.example.dev\n  partial_sync_interval: 10s\n  full_sync_interval: 3600s\n  gitlab_workspaces_proxy:\n    namespace: gitlab-workspaces\n  network_policy:\n    enabled: false\n',
    'accepts',
  ],
  ['remote_development zero interval', 'remote_development:\n  partial_sync_interval: 0s\n', 'rejects'],
  ['remote_development interval 1h', 'remote_development:\n  full_sync_interval: 1h\n', 'rejects'],
  ['remote_development unknown', 'remote_development:\n  enabled: true\n  workspace_timeout: 3600s\n', 'rejects'],
  [
    'container_scanning',
    'container_scanning:\n  cadence: "0 0 * * *"\n  vulnerability_report:\n    namespaces: [default]\n    filters:\n    - namespaces: [a]\n      kinds: [Deployment]\n  resource_requirements:\n    limits: {cpu: 500m, memory: 500Mi}\n    requests: {cpu: 100m, memory: 100Mi}\n',
    'accepts',
  ],
  ['container_scanning cadence empty', 'container_scanning:\n  cadence: ""\n', 'rejects'],
  [
    'container_scanning resource number',
    'container_scanning:\n  resource_requirements:\n    limits: {cpu: 1}\n',
    'rejects',
  ],
  ['container_scanning unknown', 'container_scanning:\n  schedule: daily\n', 'rejects'],
  ['key given as a boolean', 'gitops:\n  manifest_projects:\n  - yes: 1\n', 'rejects'],
];

/** Configs as people publish them (GitLab's docs, blog posts, older releases), with GitLab v16.5's verdict. */
const PUBLISHED: readonly [name: string, yaml: string, gitlab: 'accepts' | 'rejects'][] = [
  [
    'docs: GitOps with every key',
    "gitops:\n  manifest_projects:\n  - id: gitlab-org/cluster-integration/gitlab-agent\n    default_namespace: my-ns\n    paths:\n      # Read all YAML files from this directory.\n    - glob: '/team1/app1/*.yaml'\n      # Read all .yaml files from team2/apps and all subdirectories.\n    - glob: '/team2/apps/**/*.yaml'\n      # If 'paths' is not specified or is an empty list, the configuration below is used.\n    - glob: '/**/*.{yaml,yml,json}'\n    reconcile_timeout: 3600s\n    dry_run_strategy: none\n    prune: true\n    prune_timeout: 3600s\n    prune_propagation_policy: foreground\n    inventory_policy: must_match\n",
    'accepts',
  ],
  [
    'docs: ci_access projects and groups',
    'ci_access:\n  projects:\n    - id: path/to/project\n  groups:\n    - id: path/to/group/subgroup\n',
    'accepts',
  ],
  [
    'docs: ci_access impersonate',
    'ci_access:\n  projects:\n    - id: path/to/project\n      access_as:\n        impersonate:\n          username: name-of-identity-to-impersonate\n          uid: name-of-identity-to-impersonate\n          groups:\n          - group1\n          - group2\n          extra:\n          - key: key1\n            val: ["val1", "val2"]\n          - key: key2\n            val: ["x"]\n',
    'accepts',
  ],
  [
    'docs: ci_access ci_job with environments',
    'ci_access:\n  groups:\n  - id: group/subgroup\n    environments:\n    - production\n    - "review/*"\n    access_as:\n      ci_job: {}\n',
    'accepts',
  ],
  [
    'docs: user_access',
    'user_access:\n  access_as:\n    agent: {}\n  projects:\n    - id: group-1/project-1\n  groups:\n    - id: group-2\n',
    'accepts',
  ],
  ['docs: observability', 'observability:\n  logging:\n    level: debug\n    grpc_level: warn\n', 'accepts'],
  [
    'docs: container_scanning',
    "container_scanning:\n  cadence: '0 0 * * *' # Daily at 00:00 (Kubernetes cluster time)\n  vulnerability_report:\n    namespaces:\n      - development\n      - staging\n      - production\n",
    'accepts',
  ],
  [
    'docs: remote_development',
    'remote_development:\n  enabled: true\n  dns_zone: "workspaces.example.dev"\n',
    'accepts',
  ],
  [
    'docs: flux receiver',
    'flux:\n  webhook_receiver_url: http://webhook-receiver.another-flux-namespace.svc.cluster.local\n',
    'accepts',
  ],
  [
    'docs: ref tag',
    "gitops:\n  manifest_projects:\n  - id: group/project\n    ref:\n      tag: v1.0\n    paths:\n    - glob: '/manifests/**/*.yaml'\n",
    'accepts',
  ],
  [
    'blog: one manifest project',
    'gitops:\n  manifest_projects:\n  - id: "mygroup/kubernetes-manifests"\n    default_namespace: default\n    paths:\n    - glob: "/manifests/**/*.yaml"\n',
    'accepts',
  ],
  [
    '14.x: resource_inclusions',
    "gitops:\n  manifest_projects:\n  - id: \"path/to/your-manifest-project-1\"\n    default_namespace: my-ns\n    paths:\n    - glob: '/manifests/*.{yaml,yml,json}'\n    reconcile_timeout: 3600s\n    resource_inclusions:\n    - api_groups:\n      - apps\n      kinds:\n      - '*'\n",
    'rejects',
  ],
  ['15.x: starboard', 'starboard:\n  vulnerability_report:\n    namespaces:\n      - default\n', 'rejects'],
  ['14.x: cilium', 'cilium:\n  hubble_relay_address: "hubble-relay.cilium.svc.cluster.local:80"\n', 'rejects'],
  [
    '16.1: charts',
    'gitops:\n  charts:\n  - release_name: my-release\n    source:\n      project:\n        id: my-group/my-project\n        path: dir-in-project/with/charts\n    namespace: my-ns\n    max_history: 1\n',
    'rejects',
  ],
  [
    'blog: Go-style timeouts',
    'gitops:\n  manifest_projects:\n  - id: group/manifests\n    reconcile_timeout: 10m\n    prune_timeout: 5m\n',
    'rejects',
  ],
];

describe('parseAgentConfig agrees with GitLab v16.5 on every case', () => {
  it.each([...CASES, ...PUBLISHED])('%s: GitLab %s', (_name, yaml, gitlab) => {
    const result = parseAgentConfig(yaml, {
      file: 'config.yaml',
      configProject: 'group/agents',
      commit: 'a'.repeat(40),
    });
    const verdict = result.ok ? 'accepts' : 'rejects';
    expect([verdict, result.ok ? [] : result.problems.map((p) => p.message)]).toEqual([gitlab, expect.anything()]);
    if (!result.ok) {
      // Every rejection names a line and a column.
      for (const issue of result.issues ?? [])
        expect([issue.message, issue.line, issue.column]).toEqual([
          issue.message,
          expect.any(Number),
          expect.any(Number),
        ]);
    }
  });
});
