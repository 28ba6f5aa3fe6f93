// What gets published (issue 13): the root package carries the JavaScript entry
// points and typings but never a binary; each npm/<platform> package carries one
// binary and says, in os/cpu/libc, which machines npm installs it on; every target
// in napi.targets has its package. Checked as `npm pack --dry-run` shows them, and
// through the same napi artifacts / napi prepublish steps the release workflow runs,
// in a temporary copy with stand-in binaries. Also: .ci/check-workflow.mjs, which
// checks the workflow against package.json, fails on a workflow that misses a part.
//
// Run: node --test __test__/package.spec.mjs (about 10 s: several npm pack runs).

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { load } from 'js-yaml'

import { checkWorkflow, nodeTestCommand, WORKFLOW } from '../.ci/check-workflow.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const targets = pkg.napi.targets
const binaryName = pkg.napi.binaryName
const npmCmd = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const napiCli = join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

// What the root package must hold, exactly (npm adds package.json and README.md).
const ROOT_FILES = ['README.md', 'binding.d.ts', 'binding.js', 'index.d.ts', 'index.js', 'package.json']

// The platform package of each target, written out: os/cpu/libc as npm compares them
// with process.platform, process.arch and the C library (libc only on Linux).
const EXPECTED = {
  'x86_64-unknown-linux-gnu': { dir: 'linux-x64-gnu', os: ['linux'], cpu: ['x64'], libc: ['glibc'] },
  'aarch64-unknown-linux-gnu': { dir: 'linux-arm64-gnu', os: ['linux'], cpu: ['arm64'], libc: ['glibc'] },
  'x86_64-unknown-linux-musl': { dir: 'linux-x64-musl', os: ['linux'], cpu: ['x64'], libc: ['musl'] },
  'aarch64-unknown-linux-musl': { dir: 'linux-arm64-musl', os: ['linux'], cpu: ['arm64'], libc: ['musl'] },
  'x86_64-apple-darwin': { dir: 'darwin-x64', os: ['darwin'], cpu: ['x64'] },
  'aarch64-apple-darwin': { dir: 'darwin-arm64', os: ['darwin'], cpu: ['arm64'] },
  'x86_64-pc-windows-msvc': { dir: 'win32-x64-msvc', os: ['win32'], cpu: ['x64'] }
}

const work = mkdtempSync(join(tmpdir(), 'bsr-package-spec-'))
after(() => rmSync(work, { recursive: true, force: true }))

/** Environment for child npm runs, without what an outer `npm test` sets. */
function cleanEnv () {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('npm_') || k === 'INIT_CWD' || k === 'NODE_OPTIONS') continue
    env[k] = v
  }
  return env
}

function run (cmd, args, cwd) {
  // npm.cmd can only be started through a shell on Windows.
  const r = spawnSync(cmd, args, { cwd, env: cleanEnv(), encoding: 'utf8', timeout: 120_000, shell: cmd === npmCmd && process.platform === 'win32' })
  if (r.error) throw r.error
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd} failed (${r.status}):\n${r.stdout}\n${r.stderr}`)
  return r
}

/** The paths `npm pack --dry-run` would put in the tarball of the package in `dir`, sorted. */
function packedFiles (dir) {
  const r = run(npmCmd, ['pack', '--dry-run', '--json', '--ignore-scripts'], dir)
  const [info] = JSON.parse(r.stdout)
  return info.files.map((f) => f.path).sort()
}

const platformPackage = (dir) => JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8'))

test('the root package lists its entry points and typings in files, and no binary', () => {
  assert.deepEqual(pkg.files, ['index.js', 'index.d.ts', 'binding.js', 'binding.d.ts'])
  assert.equal(pkg.main, 'index.js')
  assert.equal(pkg.types, 'index.d.ts')
  for (const f of pkg.files) assert.ok(existsSync(join(root, f)), `${f} is listed in files but missing`)
})

test('npm pack of the root package holds exactly the six files, whatever binaries lie in the directory', () => {
  // The checkout as it is (after `npm run build` it holds this platform's .node).
  assert.deepEqual(packedFiles(root), ROOT_FILES)

  // As after `napi artifacts`, which also copies every binary into the package root.
  const copy = join(work, 'root-with-binaries')
  mkdirSync(copy)
  for (const f of ROOT_FILES) cpSync(join(root, f), join(copy, f))
  for (const t of targets) writeFileSync(join(copy, `${binaryName}.${EXPECTED[t]?.dir ?? t}.node`), 'not a binary')
  const files = packedFiles(copy)
  assert.deepEqual(files, ROOT_FILES)
  assert.deepEqual(files.filter((f) => f.endsWith('.node')), [])
})

test('the expected platform packages are derived the way napi-rs names them', async () => {
  // The table above is the oracle; napi-rs's own triple parser must agree with it.
  const { parseTriple } = await import('@napi-rs/cli')
  for (const [triple, want] of Object.entries(EXPECTED)) {
    const t = parseTriple(triple)
    assert.equal(t.platformArchABI, want.dir, triple)
    assert.deepEqual([t.platform], want.os, triple)
    assert.deepEqual([t.arch], want.cpu, triple)
  }
})

test('every target in napi.targets has its npm/ package, and npm/ has no other', () => {
  for (const t of targets) assert.ok(EXPECTED[t], `${t}: add its expected os/cpu/libc to this spec`)
  const dirs = readdirSync(join(root, 'npm'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()
  assert.deepEqual(dirs, targets.map((t) => EXPECTED[t].dir).sort())
})

for (const triple of Object.keys(EXPECTED).filter((t) => targets.includes(t))) {
  const want = EXPECTED[triple]
  test(`npm/${want.dir}: name, version, main, files, os/cpu${want.libc ? '/libc' : ''} match ${triple}`, () => {
    const p = platformPackage(want.dir)
    const binary = `${binaryName}.${want.dir}.node`
    assert.equal(p.name, `${pkg.name}-${want.dir}`)
    assert.equal(p.version, pkg.version, 'versions follow package.json (npm version runs napi version)')
    assert.equal(p.main, binary)
    assert.deepEqual(p.files, [binary])
    assert.deepEqual(p.os, want.os)
    assert.deepEqual(p.cpu, want.cpu)
    if (want.libc) assert.deepEqual(p.libc, want.libc)
    else assert.equal('libc' in p, false, 'libc only on Linux: npm would skip the package elsewhere')
    assert.equal(p.license, pkg.license)
    assert.deepEqual(p.engines, pkg.engines)
    assert.equal('scripts' in p, false, 'a platform package runs nothing at install')
  })
}

test('napi artifacts and napi prepublish --dry-run accept the packages, which pack to their binary alone', () => {
  // The release workflow's steps, in a copy of the package with stand-in binaries
  // laid out as actions/download-artifact writes them.
  const copy = join(work, 'release')
  mkdirSync(copy)
  for (const f of [...ROOT_FILES, 'npm']) cpSync(join(root, f), join(copy, f), { recursive: true })
  for (const t of targets) {
    const dir = join(copy, 'artifacts', `bindings-${t}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `${binaryName}.${EXPECTED[t].dir}.node`), `stand-in for ${t}`)
  }
  run(process.execPath, [napiCli, 'artifacts'], copy)
  for (const t of targets) {
    const { dir } = EXPECTED[t]
    const binary = `${binaryName}.${dir}.node`
    assert.equal(readFileSync(join(copy, 'npm', dir, binary), 'utf8'), `stand-in for ${t}`)
    assert.deepEqual(packedFiles(join(copy, 'npm', dir)), ['README.md', binary, 'package.json'].sort())
  }
  assert.deepEqual(packedFiles(copy), ROOT_FILES, 'the root package leaves out the binaries napi artifacts copied next to it')
  run(process.execPath, [napiCli, 'prepublish', '-t', 'npm', '--dry-run', '--no-gh-release'], copy)
})

test('the workflow check passes on ci.yml and fails on a workflow that misses a part', () => {
  const workflow = load(readFileSync(WORKFLOW, 'utf8'))
  assert.deepEqual(checkWorkflow(workflow, pkg), [])
  assert.equal(nodeTestCommand(pkg), 'node --test --test-concurrency=1 --expose-gc __test__/*.spec.mjs')

  const broken = (change) => {
    const w = structuredClone(workflow)
    change(w)
    return checkWorkflow(w, pkg)
  }
  assert.deepEqual(broken((w) => { w.jobs.build.strategy.matrix.settings = w.jobs.build.strategy.matrix.settings.filter((s) => s.target !== 'aarch64-unknown-linux-musl') }),
    ['build: target aarch64-unknown-linux-musl has 0 build entries (expected 1)'])
  assert.deepEqual(broken((w) => { w.jobs.build.strategy.matrix.settings[0].build = 'npx napi build --platform --release' }),
    [`build: x86_64-unknown-linux-gnu: "npx napi build --platform --release" is not a napi build --platform --release --target x86_64-unknown-linux-gnu`])
  assert.deepEqual(broken((w) => { w.jobs['test-musl'].strategy.matrix.target = ['x86_64-unknown-linux-musl'] }),
    ['test: target aarch64-unknown-linux-musl is not tested'])
  assert.deepEqual(broken((w) => { w.jobs.test.strategy.matrix.node = ['22', '24'] }),
    ['test: node versions 22, 24 (expected 20, 22, 24)'])
  assert.deepEqual(broken((w) => { w.jobs.publish.permissions = { contents: 'read' } }),
    ['publish: permissions.id-token is not write (provenance)'])
  assert.deepEqual(broken((w) => { w.on.push.tags = ['release-*'] }),
    ['on.push.tags does not include v*'])
  assert.deepEqual(broken((w) => { w.jobs.publish.needs = ['lint', 'test'] }),
    ['publish: does not need test-musl'])
  // A target added to package.json without a build or a test.
  const more = { ...pkg, napi: { ...pkg.napi, targets: [...targets, 'aarch64-pc-windows-msvc'] } }
  assert.deepEqual(checkWorkflow(workflow, more),
    ['build: target aarch64-pc-windows-msvc has 0 build entries (expected 1)', 'test: target aarch64-pc-windows-msvc is not tested'])
})
