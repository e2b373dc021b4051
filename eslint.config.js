// ESLint for the whole tree (`npm run lint`, and `.ci/run`). A small rule set: each rule is a house
// rule (CONTRIBUTING.md) that a reviewer cannot check by eye. Layout and spacing are Prettier's
// (.prettierrc.json), so there is no stylistic rule here.
//
// The promise rules need type information: parserOptions.projectService reads tsconfig.json, which
// includes bin/, src/, e2e/ and bench/, tests too. Plain JavaScript (scripts/, the config files) is
// outside it and gets only the rules that need no types.
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** Unused bindings are dead code; a leading `_` marks one kept on purpose (a positional argument). */
const unusedVars = {
  args: 'after-used',
  argsIgnorePattern: '^_',
  varsIgnorePattern: '^_',
  caughtErrorsIgnorePattern: '^_',
  destructuredArrayIgnorePattern: '^_',
  ignoreRestSiblings: true,
};

export default defineConfig(
  { ignores: ['dist/', 'coverage/', '.cache/', '.tmp/', 'bench/results/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      // Every async path has an owner that catches: a promise is awaited, returned, given a
      // .catch, or marked `void` with a comment saying why nothing can reject unseen.
      '@typescript-eslint/no-floating-promises': 'error',
      // The same rule for callbacks: an async function where a void callback is expected (an
      // event handler, setTimeout, forEach) rejects into nowhere.
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', unusedVars],
      // Type-only imports are erased, so the reader (and the ESM loader) knows which imports run.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      // STYLE: no `any`. Free-form JSON is `unknown`, narrowed; a test fixture that must index
      // freely says so in an eslint-disable comment with its reason.
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  {
    rules: {
      // Lines at most 120 characters. Prettier breaks code at 120 but not comments; lines holding a
      // string, template, regular expression or URL are left to it, since those cannot be broken
      // without changing what they say. (A core rule until ESLint 11, then @stylistic/max-len.)
      'max-len': [
        'error',
        {
          code: 120,
          ignoreStrings: true,
          ignoreTemplateLiterals: true,
          ignoreRegExpLiterals: true,
          ignoreUrls: true,
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    rules: { 'no-unused-vars': ['error', unusedVars] },
  },
);
