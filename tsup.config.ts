import { defineConfig } from 'tsup'

export default defineConfig({
  entry: {
    index: 'index.ts',
    'core/index': 'core/index.ts',
    'guard/index': 'adapters/guard/index.ts',
    'http-mitm-proxy/index': 'adapters/http-mitm-proxy/index.ts'
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  splitting: true,
  treeshake: true
})
