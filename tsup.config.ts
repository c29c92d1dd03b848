import { defineConfig } from 'tsup'

export default defineConfig([
  {
  entry: {
    index: 'index.ts',
    'core/index': 'core/index.ts',
    'guard/index': 'adapters/guard/index.ts',
    'node/index': 'adapters/node/index.ts',
    'http-mitm-proxy/index': 'adapters/http-mitm-proxy/index.ts',
    'mockttp/index': 'adapters/mockttp/index.ts',
    'undici/index': 'adapters/undici/index.ts',
    'decision-service/index': 'adapters/decision-service/index.ts'
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
  treeshake: true
  },
  {
    // The command line: one ESM file with a shebang, run as `egress-guard` or `node dist/cli.js`.
    entry: { cli: 'adapters/cli/bin.ts' },
    format: ['esm'],
    clean: false,
    sourcemap: true,
    target: 'node20',
    banner: { js: '#!/usr/bin/env node' },
    // Minified: less for V8 to parse each time a command starts (`run` is paid by every command an agent wraps).
    minify: true,
    // The pure libraries every command loads are bundled in (resolving and reading their many
    // files cost `run` a part of its start-up); the proxy libraries and undici stay external.
    noExternal: [/^fp-ts/, /^io-ts/, 're2js', 'redos-detector'],
    external: ['http-mitm-proxy', 'mockttp', 'undici', '@peculiar/x509', 'yaml']
  },
  {
    // Loaded by `egress-guard run` into every Node child (NODE_OPTIONS=--require), and its
    // --isolate bridge: CommonJS, so any Node version and either module system can load them.
    entry: { preload: 'adapters/cli/preload.ts', isolate: 'adapters/cli/isolate.ts' },
    format: ['cjs'],
    clean: false,
    sourcemap: false,
    target: 'node20',
    skipNodeModulesBundle: true
  }
])
