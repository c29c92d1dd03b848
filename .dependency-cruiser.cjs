/** Import rules checked by `npm run lint`: no cycles, and a core that stays pure. */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Import cycles make module initialisation order-dependent; break the cycle.',
      from: {},
      to: { circular: true }
    },
    {
      name: 'core-stays-pure',
      severity: 'error',
      comment: 'core/ is pure: it may not import adapters/, test/ or bench/.',
      from: { path: '^core/' },
      to: { path: '^(adapters|test|bench)/' }
    },
    {
      name: 'core-has-no-node-modules',
      severity: 'error',
      comment: 'core/ is pure: no node: built-ins (fs, net, http, crypto, …).',
      from: { path: '^core/' },
      to: { dependencyTypes: ['core'] }
    },
    {
      name: 'core-uses-chosen-libraries',
      severity: 'error',
      comment: 'core/ may only use the pure libraries chosen for it: fp-ts, re2js, redos-detector.',
      from: { path: '^core/' },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'], pathNot: 'node_modules/(fp-ts|re2js|redos-detector)/' }
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      comment: 'Every import must resolve.',
      from: {},
      to: { couldNotResolve: true }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'] },
    exclude: { path: '(^|/)(node_modules|dist)/' }
  }
}
