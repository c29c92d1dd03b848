// Documentation that runs: every `@example` in the core's doc comments, and every code block of
// the README, is executed here, so neither can drift from the code. A README block that cannot run
// in a test (it needs the network, a provider key or a long-running server) says so in an HTML
// comment right above it, `<!-- not run: why -->`, and what it shows is tested elsewhere.
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { deepStrictEqual } from 'node:assert'

import * as E from 'fp-ts/lib/Either.js'
import { describe, expect, it } from 'vitest'

import { parsePolicyText } from '../../adapters/config/PolicyFile.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist', 'cli.js')

// --- @example blocks ---------------------------------------------------------------------------

interface Example {
  readonly module: string
  readonly code: ReadonlyArray<string>
}

/** The `@example` blocks of a source file, without their comment markers. */
const examplesOf = (module: string): ReadonlyArray<Example> => {
  const text = readFileSync(join(ROOT, module), 'utf8')
  const examples: Array<Example> = []
  for (const comment of text.match(/\/\*\*[\s\S]*?\*\//g) ?? []) {
    const lines = comment.split('\n').map((line) => line.replace(/^\s*\/?\*+\/?\s?/, ''))
    const start = lines.findIndex((line) => line.trim() === '@example')
    if (start < 0) continue
    const rest = lines.slice(start + 1)
    const end = rest.findIndex((line) => line.startsWith('@'))
    examples.push({ module, code: (end < 0 ? rest : rest.slice(0, end)).filter((line) => line.trim() !== '' && line.trim() !== '/') })
  }
  return examples
}

/**
 * Turns an example into checks: each `// => value` (continued on `//` lines) is the value of the
 * expression just above it, which starts at the last line that is not indented.
 */
const checksOf = (code: ReadonlyArray<string>): string => {
  const out: Array<string> = []
  let i = 0
  while (i < code.length) {
    const line = code[i] ?? ''
    if (!line.startsWith('// =>')) {
      out.push(line)
      i++
      continue
    }
    const expected = [line.slice('// =>'.length)]
    for (i++; i < code.length && (code[i] ?? '').startsWith('//') && !(code[i] ?? '').startsWith('// =>'); i++) expected.push((code[i] ?? '').replace(/^\/\/\s?/, ''))
    let start = out.length - 1
    while (start > 0 && /^\s/.test(out[start] ?? '')) start--
    const expression = out.splice(start).join('\n')
    out.push(`__check(${expression}, ${expected.join('\n')})`)
  }
  return out.join('\n')
}

const SOURCES = ['core', 'adapters'].flatMap((dir) =>
  (readdirSync(join(ROOT, dir), { recursive: true }) as Array<string>).filter((f) => f.endsWith('.ts')).map((f) => `${dir}/${f}`)
)
const EXAMPLES = SOURCES.flatMap(examplesOf)

describe('@example blocks in doc comments', () => {
  it('exist (the list below is not empty by accident)', () => {
    expect(EXAMPLES.length).toBeGreaterThanOrEqual(3)
  })

  it.each(EXAMPLES.map((e, i) => [`${e.module} #${i}`, e] as const))('%s runs and gives what it says', async (_, example) => {
    expect(example.code.some((line) => line.startsWith('// =>')), 'an example states its result with `// =>`').toBe(true)
    // In scope: the core's public surface, the example's own module, and fp-ts's Either as `E`.
    const scope: Record<string, unknown> = { ...(await import('../../core/index.js')), ...(await import(`../../${example.module.replace(/\.ts$/, '.js')}`)), E }
    const checked: Array<unknown> = []
    const check = (actual: unknown, expected: unknown): void => {
      deepStrictEqual(JSON.parse(JSON.stringify(actual)), expected)
      checked.push(actual)
    }
    const names = Object.keys(scope).filter((name) => /^[A-Za-z_$][\w$]*$/.test(name))
    new Function(...names, '__check', checksOf(example.code))(...names.map((name) => scope[name]), check)
    expect(checked.length).toBe(example.code.filter((line) => line.startsWith('// =>')).length)
  })
})

// --- README code blocks ------------------------------------------------------------------------

interface Block {
  readonly lang: string
  readonly body: string
  readonly line: number
  /** Why it is not run, from a `<!-- not run: why -->` comment right above it. */
  readonly notRun: string | undefined
}

const blocksOf = (file: string): ReadonlyArray<Block> => {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n')
  const blocks: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i] ?? '')
    if (open === null) continue
    const end = lines.findIndex((line, j) => j > i && line === '```')
    const notRun = /^<!-- not run: (.+) -->$/.exec(lines[i - 1] ?? '')?.[1]
    blocks.push({ lang: open[1] ?? '', body: lines.slice(i + 1, end).join('\n'), line: i + 1, notRun })
    i = end
  }
  return blocks
}

/** A directory where `egress-guard` resolves to this package (its built `dist/`), as for a user. */
const userDirectory = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-examples-'))
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(ROOT, join(dir, 'node_modules', 'egress-guard'), 'dir')
  return dir
}

/** Runs a console block: each `$ [VAR=value …] egress-guard …` must print exactly the lines below it; `$ cat FILE` writes them to FILE first. */
const runConsole = (body: string): void => {
  const dir = userDirectory()
  const steps = body.split(/^\$ /m).filter((step) => step !== '')
  for (const step of steps) {
    const [command = '', ...shown] = step.replace(/\n$/, '').split('\n')
    const cat = /^cat (\S+)$/.exec(command)
    if (cat !== null) {
      writeFileSync(join(dir, cat[1] ?? ''), `${shown.join('\n')}\n`)
      continue
    }
    const words = command.split(' ')
    const env: Record<string, string> = { PATH: process.env['PATH'] ?? '', HOME: dir }
    while (/^[A-Z_]+=/.test(words[0] ?? '')) {
      const [name = '', ...value] = (words.shift() ?? '').split('=')
      env[name] = value.join('=')
    }
    expect(words[0], `a README command must be egress-guard or cat: ${command}`).toBe('egress-guard')
    let output: string
    try {
      output = execFileSync(process.execPath, [CLI, ...words.slice(1)], { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (error) {
      output = `${(error as { stdout?: string }).stdout ?? ''}${(error as { stderr?: string }).stderr ?? ''}`
    }
    expect(output.trimEnd(), `output of \`${command}\``).toBe(shown.join('\n'))
  }
}

/** Runs a TypeScript block as a user's module would run (tsx); each `console.log(…) // text` must print that text. */
const runTypeScript = (body: string): void => {
  const dir = userDirectory()
  writeFileSync(join(dir, 'example.ts'), body)
  const output = execFileSync(process.execPath, [join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(dir, 'example.ts')], { cwd: dir, encoding: 'utf8' })
  const expected = body.split('\n').flatMap((line) => /console\.log\(.*\)\s*\/\/\s*(.+)$/.exec(line)?.[1] ?? [])
  expect(expected.length, 'a TypeScript block says what it prints with `// text` after console.log').toBeGreaterThan(0)
  expect(output.trimEnd().split('\n')).toEqual(expected)
}

describe.each(['README.md'])('code blocks of %s', (file) => {
  const blocks = blocksOf(file)
  it.each(blocks.map((b) => [`${b.lang} block at line ${b.line}`, b] as const))('%s runs, or says why it cannot', (_, block) => {
    if (block.notRun !== undefined) {
      expect(block.notRun.length).toBeGreaterThan(10)
      return
    }
    switch (block.lang) {
      case 'console':
        return runConsole(block.body)
      case 'ts':
        return runTypeScript(block.body)
      case 'yaml': {
        const decoded = parsePolicyText(block.body, `${file}:${block.line}`)
        expect(E.isRight(decoded) ? [] : decoded.left.messages).toEqual([])
        return
      }
      default:
        throw new Error(`a ${block.lang} block cannot be run: mark it <!-- not run: why -->`)
    }
  })
})
