// Vitest global setup: every temporary file and directory of a test run (CAs and their keys,
// policies, audit files, nginx and mitmproxy directories) goes under one directory made for the
// run, and that directory is removed when the run ends. EGRESS_GUARD_KEEP_TEST_TMP=1 keeps it.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Points TMPDIR (read by os.tmpdir() in the test workers and by every child process) at a fresh directory. */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'egress-guard-tests-'))
  // nginx's workers run as `nobody`: they must be able to walk into their own prefix below this.
  // Everything else below is made by mkdtemp, 0700 each.
  chmodSync(dir, 0o755)
  process.env['TMPDIR'] = dir
  return () => {
    if (process.env['EGRESS_GUARD_KEEP_TEST_TMP'] === '1') process.stderr.write(`test files kept in ${dir}\n`)
    else rmSync(dir, { recursive: true, force: true })
  }
}
