// Three projects: `unit` runs the pure tests beside the code with no I/O beyond temp files;
// `integration` runs against the real control plane and Git server, started once per jest run by
// e2e/harness/global-setup.ts (and stopped by global-teardown.ts); `node` runs the tests whose pods
// must really run (e2e/node/, e2e/scenario/) against a control plane of its own plus a real node
// (kubelet, containerd: e2e/harness/node.ts, root only), started by the same global setup.
const nodeTests = ['<rootDir>/e2e/node/**/*.test.ts', '<rootDir>/e2e/scenario/**/*.test.ts'];
const transform = {
  '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'es6' } }],
};
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform,
  testEnvironment: 'node',
};
export default {
  // A global option: jest ignores testTimeout inside a project entry.
  testTimeout: 60000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/bin/**/*.test.ts', '<rootDir>/bench/**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/e2e/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/e2e/node/', '<rootDir>/e2e/scenario/'],
      globalSetup: '<rootDir>/e2e/harness/global-setup.ts',
      globalTeardown: '<rootDir>/e2e/harness/global-teardown.ts',
    },
    {
      ...common,
      displayName: 'node',
      testMatch: nodeTests,
      setupFiles: ['<rootDir>/e2e/harness/jest-node-env.ts'],
      // Files of their own: jest runs a global setup file once per run, whichever projects name it.
      globalSetup: '<rootDir>/e2e/harness/global-setup-node.ts',
      globalTeardown: '<rootDir>/e2e/harness/global-teardown-node.ts',
    },
  ],
};
