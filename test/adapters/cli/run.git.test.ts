// `egress-guard run -- git clone https://github.com/acme/private.git` on the bundled catalog, with
// real git against a local stand-in for github.com: `git http-backend` behind an HTTPS server that
// demands the credential GitHub's git endpoints take (Basic, user `x-access-token`, the token).
// Clone and push work with GITHUB_TOKEN set; without it the stand-in refuses and git fails.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { createPki } from '../support/pki.js'

const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url))
const TOKEN = 'ghp_standin0123456789abcdef'
const dir = mkdtempSync(join(tmpdir(), 'eg-run-git-'))
const root = join(dir, 'repos')

const git = (args: ReadonlyArray<string>, cwd: string) => execFileSync('git', args, { cwd, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: dir }, stdio: 'pipe' })

/** An HTTPS stand-in for github.com: git http-backend (CGI), for requests with the right Basic credential only. */
const startGitHub = async (tls: { key: string; cert: string }) => {
  const seen: Array<{ path: string; authorization: string | undefined }> = []
  const server = https.createServer(tls, (request, response) => {
    const url = new URL(request.url ?? '/', 'https://github.com')
    seen.push({ path: url.pathname, authorization: request.headers.authorization })
    if (request.headers.authorization !== `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`) {
      response.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"' }).end()
      return
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env['PATH'] ?? '',
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: 'x-access-token',
        REQUEST_METHOD: request.method ?? 'GET',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: request.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: request.headers['content-encoding'] ?? '',
        GIT_HTTP_MAX_REQUEST_BUFFER: '100M'
      }
    })
    request.pipe(cgi.stdin)
    let head = Buffer.alloc(0)
    let headersDone = false
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return void response.write(chunk)
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) return
      headersDone = true
      const headers: Record<string, string> = {}
      let status = 200
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).trim().toLowerCase()
        const value = line.slice(colon + 1).trim()
        if (name === 'status') status = Number(value.split(' ')[0])
        else headers[name] = value
      }
      response.writeHead(status, headers)
      response.write(head.subarray(end + 4))
    })
    cgi.stdout.on('end', () => response.end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as AddressInfo).port, seen, close: () => new Promise((resolve) => server.close(resolve)) }
}

const run = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, cwd = dir): Promise<{ code: number; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'run', ...args], { cwd, env: { PATH: process.env['PATH'] ?? '', HOME: dir, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', EGRESS_GUARD_CONFIG_DIR: join(dir, 'config'), ...env }, timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stderr })
    )
  })

describe('egress-guard run -- git, on the bundled catalog', () => {
  let github: Awaited<ReturnType<typeof startGitHub>>
  let args: Array<string> = []
  beforeAll(async () => {
    const pki = createPki()
    github = await startGitHub(pki.leaf(['github.com']))
    writeFileSync(join(dir, 'upstream-ca.pem'), pki.caPem)
    args = ['--upstream-ca', join(dir, 'upstream-ca.pem'), '--connect-to', `github.com:443:127.0.0.1:${github.port}`]
    // A private repository with one commit.
    mkdirSync(join(root, 'acme'), { recursive: true })
    git(['init', '--bare', '--initial-branch=main', 'private.git'], join(root, 'acme'))
    const work = join(dir, 'seed')
    mkdirSync(work)
    git(['init', '--initial-branch=main'], work)
    writeFileSync(join(work, 'README'), 'private\n')
    git(['add', 'README'], work)
    git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-m', 'first'], work)
    git(['push', join(root, 'acme', 'private.git'), 'main'], work)
  })
  afterAll(async () => {
    await github.close()
  })

  it('clones and pushes a private repository: git’s requests carry the token as Basic x-access-token', async () => {
    const clone = await run([...args, '--', 'git', 'clone', 'https://github.com/acme/private.git', join(dir, 'clone')], { GITHUB_TOKEN: TOKEN })
    expect(clone.stderr).not.toContain('fatal')
    expect(clone.code).toBe(0)
    expect(readFileSync(join(dir, 'clone', 'README'), 'utf8')).toBe('private\n')
    writeFileSync(join(dir, 'clone', 'NEW'), 'pushed\n')
    git(['add', 'NEW'], join(dir, 'clone'))
    git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-m', 'second'], join(dir, 'clone'))
    const push = await run([...args, '--', 'git', 'push', 'origin', 'main'], { GITHUB_TOKEN: TOKEN }, join(dir, 'clone'))
    expect(push.code).toBe(0)
    expect(git(['log', '--format=%s', 'main'], join(root, 'acme', 'private.git')).toString()).toBe('second\nfirst\n')
    expect(github.seen.map((s) => s.path)).toEqual(expect.arrayContaining(['/acme/private.git/info/refs', '/acme/private.git/git-upload-pack', '/acme/private.git/git-receive-pack']))
  })

  it('without GITHUB_TOKEN nothing is injected, and the stand-in refuses the clone', async () => {
    const before = github.seen.length
    const clone = await run([...args, '--', 'git', 'clone', 'https://github.com/acme/private.git', join(dir, 'refused')], {})
    expect(clone.code).not.toBe(0)
    expect(existsSync(join(dir, 'refused', 'README'))).toBe(false)
    for (const s of github.seen.slice(before)) expect(s.authorization).toBeUndefined()
  })
})
