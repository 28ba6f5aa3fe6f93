// The package as a user meets it (issue 6): `npm pack` of the root package and
// of this platform's npm/ package (the root carries no binary, issue 13),
// installed from the tarballs into a fresh project outside the repository next
// to Baileys, then
// used there by an ESM bot laid out like the real one, a CommonJS consumer and
// a TypeScript consumer (plus a file that must fail to type-check); and the
// loader's error when no binary matches. Fixtures: __test__/consumer/bot/.
//
// Run: node --test __test__/consumer.spec.mjs (about 20 s; the npm cache makes
// the install offline-friendly: --prefer-offline, versions pinned to the
// repository's lockfile). KEEP_CONSUMER=1 keeps the temporary project.
//
// No second release build: `npm pack` would run the `prepare` script (a
// release build, ~40 s). The spec checks that the .node for this platform and
// the generated binding.js / binding.d.ts exist and are newer than every Rust
// source, builds once (`npm run build`) only if they are not, then packs with
// `npm pack --ignore-scripts`.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { startWaServer } from './support/wa-server.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const fixtures = join(root, '__test__', 'consumer', 'bot')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'))
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const platform = platformArchAbi()
const binaryFile = `${pkg.napi.binaryName}.${platform}.node`

let work // temporary directory: tarball, project, copies
let project // the consumer project
let tarball
let packedFiles
let platformTarball
let platformFiles
let platformMeta
let server

/** linux-x64-gnu, darwin-arm64, win32-x64-msvc...: napi-rs's name for this platform. */
function platformArchAbi () {
  const { platform: os, arch } = process
  if (os === 'linux') return `linux-${arch}-${process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'}`
  if (os === 'win32') return `win32-${arch}-msvc`
  return `${os}-${arch}`
}

/** The environment for child processes, without what an outer `npm test` sets. */
function cleanEnv (extra = {}) {
  const env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('npm_') || k.startsWith('NAPI_RS_') || k === 'INIT_CWD' || k === 'NODE_OPTIONS') continue
    env[k] = v
  }
  return { ...env, ...extra }
}

function run (cmd, args, { cwd, env, timeout = 120000 } = {}) {
  const options = { cwd, env: env ?? cleanEnv(), encoding: 'utf8', timeout, maxBuffer: 64 * 1024 * 1024 }
  // Windows starts npm.cmd only through a shell, which takes one command line.
  const r = cmd === npm && process.platform === 'win32'
    ? spawnSync([cmd, ...args].map((a) => (/[\s"]/.test(a) ? `"${a}"` : a)).join(' '), { ...options, shell: true })
    : spawnSync(cmd, args, options)
  if (r.error) throw r.error
  return r
}

function runOk (cmd, args, opts) {
  const r = run(cmd, args, opts)
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`)
  return r
}

function newestMtime (paths) {
  let newest = 0
  for (const p of paths) {
    if (!existsSync(p)) continue
    const st = statSync(p)
    if (st.isDirectory()) newest = Math.max(newest, newestMtime(readdirSync(p).map((e) => join(p, e))))
    else newest = Math.max(newest, st.mtimeMs)
  }
  return newest
}

/** Whether the release binary and the generated binding loader and typings are newer than every source. */
function buildIsFresh () {
  const outputs = [binaryFile, 'binding.js', 'binding.d.ts'].map((f) => join(root, f))
  if (!outputs.every((f) => existsSync(f))) return false
  const sources = newestMtime(['src', 'Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => join(root, f)))
  return outputs.every((f) => statSync(f).mtimeMs >= sources)
}

/** Runs `node file` in the project; resolves with { code, signal, stdout, stderr, ms }. */
function runNode (args, { env, timeoutMs = 60000 } = {}) {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, args, { cwd: project, env: cleanEnv(env) })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

const lockVersion = (name) => lock.packages[`node_modules/${name}`]?.version

before(async () => {
  if (!buildIsFresh()) {
    process.stderr.write('consumer.spec: the release binary is missing or older than src/: running npm run build\n')
    runOk(npm, ['run', 'build'], { cwd: root, timeout: 600000 })
  }
  work = mkdtempSync(join(tmpdir(), 'bsr-consumer-'))
  const packed = runOk(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root })
  const [info] = JSON.parse(packed.stdout)
  tarball = join(work, info.filename)
  packedFiles = info.files.map((f) => f.path)

  // This platform's package as `napi artifacts` fills it: a copy of npm/<platform> plus the binary.
  const staged = join(work, 'platform-package')
  cpSync(join(root, 'npm', platform), staged, { recursive: true })
  cpSync(join(root, binaryFile), join(staged, binaryFile))
  platformMeta = JSON.parse(readFileSync(join(staged, 'package.json'), 'utf8'))
  const [platformInfo] = JSON.parse(runOk(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: staged }).stdout)
  platformTarball = join(work, platformInfo.filename)
  platformFiles = platformInfo.files.map((f) => f.path)

  project = join(work, 'bot')
  cpSync(fixtures, project, { recursive: true })
  writeFileSync(join(project, 'package.json'), JSON.stringify({
    name: 'consumer-bot',
    version: '1.0.0',
    private: true,
    type: 'module',
    dependencies: {
      'baileys-socket-registry': `file:${tarball}`,
      // As published, the root package names it in optionalDependencies (napi prepublish).
      [`baileys-socket-registry-${platform}`]: `file:${platformTarball}`,
      '@whiskeysockets/baileys': lockVersion('@whiskeysockets/baileys'),
      pino: lockVersion('pino')
    },
    devDependencies: {
      '@types/node': lockVersion('@types/node')
    }
  }, null, 2))
  runOk(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: project, timeout: 300000 })

  server = await startWaServer()
})

after(async () => {
  await server?.close()
  if (work && !process.env.KEEP_CONSUMER) rmSync(work, { recursive: true, force: true })
  else if (work) process.stderr.write(`consumer.spec: kept ${work}\n`)
})

test('the tarball holds what a user needs and nothing else', () => {
  const needed = ['package.json', 'README.md', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts']
  for (const f of needed) assert.ok(packedFiles.includes(f), `${f} is missing from the tarball: ${packedFiles}`)
  const extra = packedFiles.filter((f) => !needed.includes(f) && !/^LICEN[CS]E/i.test(f))
  assert.deepEqual(extra, [], 'the tarball holds files a user does not need')
  for (const f of packedFiles) {
    assert.doesNotMatch(f, /^(target|src|__test__|bench|demo|npm|node_modules|\.ci)\//, f)
    assert.doesNotMatch(f, /^Cargo\.|\.rs$|\.tgz$/, f)
  }
  const installed = join(project, 'node_modules', 'baileys-socket-registry')
  assert.deepEqual(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).main, 'index.js')
  assert.equal(existsSync(join(installed, binaryFile)), false, 'the binary comes from the platform package')
  assert.ok(existsSync(join(project, 'node_modules', `baileys-socket-registry-${platform}`, binaryFile)))
})

test('an ESM bot laid out like the real one works from the tarball and exits by itself', async () => {
  const r = await runNode(['main.js'], { env: { WA_URL: `ws://127.0.0.1:${server.port}/ws/chat` }, timeoutMs: 60000 })
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '))
  assert.ok(line, `no RESULT line (exit ${r.code}, signal ${r.signal}):\n${r.stdout}\n${r.stderr}`)
  const result = JSON.parse(line.slice('RESULT '.length))
  assert.deepEqual(result.failed, [], 'checks failed in the bot')
  assert.ok(result.checks >= 25, `only ${result.checks} checks ran`)
  // A handle left open (a socket, a timer) would keep the bot alive: it must exit on its own.
  assert.equal(r.signal, null, `the bot did not exit by itself within 60 s:\n${r.stderr}`)
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stderr, '', 'the bot wrote to stderr')
  assert.deepEqual(server.errors, [])
})

test('a CommonJS consumer uses it with require()', async () => {
  const r = await runNode(['cjs-consumer.cjs'])
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
  assert.match(r.stdout, /CJS OK/)
})

test('ESM named imports and the default import resolve through the entry point', async () => {
  const code = [
    "import registry, { registerSocket, getStats, createSocketWrapper } from 'baileys-socket-registry'",
    "const ns = await import('baileys-socket-registry')",
    "const names = Object.keys(ns).filter((k) => k !== 'default').sort()",
    'console.log(JSON.stringify({ same: registry.registerSocket === registerSocket, types: [typeof registerSocket, typeof getStats, typeof createSocketWrapper], names, cjs: Object.keys(registry).sort() }))'
  ].join('\n')
  const r = await runNode(['--input-type=module', '-e', code])
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout)
  assert.equal(out.same, true)
  assert.deepEqual(out.types, ['function', 'function', 'function'])
  // Every CommonJS export is also a named ESM export (cjs-module-lexer follows index.js into binding.js).
  assert.deepEqual(out.names, out.cjs)
})

test('the TypeScript consumer type-checks with tsc --noEmit --strict and uses every export', () => {
  const installed = join(project, 'node_modules', 'baileys-socket-registry')
  const dts = ['index.d.ts', 'binding.d.ts'].map((f) => readFileSync(join(installed, f), 'utf8')).join('\n')
  const exported = [...dts.matchAll(/^export (?:declare )?(?:function|const|interface|type) (\w+)/gm)].map((m) => m[1])
  assert.ok(exported.length > 30, `only ${exported.length} exports found in index.d.ts and binding.d.ts`)
  const consumer = readFileSync(join(project, 'ts', 'consumer.ts'), 'utf8')
  const unused = exported.filter((name) => !new RegExp(`\\b${name}\\b`).test(consumer))
  assert.deepEqual(unused, [], 'exports the TypeScript consumer does not use')

  // consumer.ts imports Baileys, whose own .d.ts files do not pass a strict lib check:
  // tsconfig.json skips lib checks; tsconfig.dts.json checks index.d.ts itself
  // (skipLibCheck: false) from a CommonJS .cts consumer that does not import Baileys.
  for (const config of ['tsconfig.json', 'tsconfig.dts.json']) {
    const r = run(process.execPath, [tsc, '-p', config, '--noEmit', '--strict', '--pretty', 'false'], { cwd: project })
    assert.equal(r.status, 0, `tsc -p ${config}:\n${r.stdout}${r.stderr}`)
  }
})

test('a file misusing the API fails to type-check, on every marked line and no other', () => {
  const source = readFileSync(join(project, 'ts', 'must-fail.ts'), 'utf8').split('\n')
  const marked = source
    .map((text, i) => ({ text, line: i + 1 }))
    .filter(({ text }) => !text.trimStart().startsWith('//') && text.includes('// error:'))
    .map(({ line }) => line)
  assert.ok(marked.length >= 20, `only ${marked.length} marked lines`)
  const r = run(process.execPath, [tsc, '-p', 'tsconfig.fail.json', '--noEmit', '--strict', '--pretty', 'false'], { cwd: project })
  assert.notEqual(r.status, 0, 'must-fail.ts type-checked')
  const errorLines = [...new Set([...r.stdout.matchAll(/^ts\/must-fail\.ts\((\d+),\d+\): error TS\d+/gm)].map((m) => Number(m[1])))]
  const other = r.stdout.split('\n').filter((l) => /error TS/.test(l) && !l.startsWith('ts/must-fail.ts('))
  assert.deepEqual(other, [], 'errors outside must-fail.ts')
  assert.deepEqual(errorLines.sort((a, b) => a - b), marked, `tsc output:\n${r.stdout}`)
})

test('without a matching binary the loader says what to do', async () => {
  // A copy of the installed package without its .node: never the working tree.
  const bare = join(work, 'no-binary')
  const copy = join(bare, 'node_modules', 'baileys-socket-registry')
  mkdirSync(dirname(copy), { recursive: true })
  cpSync(join(project, 'node_modules', 'baileys-socket-registry'), copy, { recursive: true })
  assert.equal(existsSync(join(copy, binaryFile)), false)
  const load = (how) => {
    const code = how === 'esm'
      ? "import('baileys-socket-registry').catch((e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); process.exitCode = 3 })"
      : "try { require('baileys-socket-registry') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); process.exitCode = 3 }"
    const r = run(process.execPath, ['-e', code], { cwd: bare })
    assert.equal(r.status, 3, `${how}: loading did not fail as expected:\n${r.stdout}\n${r.stderr}`)
    return JSON.parse(r.stdout)
  }

  // From the registry: the platform package is what is missing.
  for (const how of ['cjs', 'esm']) {
    const e = load(how)
    assert.equal(e.code, 'ERR_NATIVE_BINDING_NOT_FOUND')
    assert.match(e.message, new RegExp(`no native binary for this platform \\(${platform}`))
    assert.match(e.message, new RegExp(`npm install baileys-socket-registry-${platform}@${pkg.version}`))
    assert.match(e.message, new RegExp(`${binaryFile.replace(/\./g, '\\.')}: not found`))
  }

  // A source checkout (Cargo.toml present): build it with Rust.
  writeFileSync(join(copy, 'Cargo.toml'), '[package]\nname = "baileys-socket-registry"\n')
  const e = load('cjs')
  assert.equal(e.code, 'ERR_NATIVE_BINDING_NOT_FOUND')
  assert.match(e.message, /source checkout/)
  assert.match(e.message, /rustup/)
  assert.match(e.message, /npm run build/)
  assert.ok(e.message.includes(copy), 'the message names the package directory')
})

test('the npm/ platform package for this platform provides the binary', () => {
  // As published: the root package without a .node, plus the platform package that
  // `napi prepublish` makes an optional dependency, both installed from their tarballs.
  assert.equal(platformMeta.name, `baileys-socket-registry-${platform}`)
  assert.equal(platformMeta.version, pkg.version, 'npm/ versions follow package.json (napi version)')
  assert.equal(platformMeta.main, binaryFile)
  assert.deepEqual(platformFiles.sort(), ['README.md', binaryFile, 'package.json'].sort())

  const r = runOk(process.execPath, ['-e', [
    "const r = require('baileys-socket-registry')",
    "const s = r.registerSocket('p', { ev: { on () {}, off () {} }, end () {} })",
    `const from = require('node:path').relative(process.cwd(), require.resolve('${platformMeta.name}')).split(require('node:path').sep).join('/')`,
    "console.log(JSON.stringify({ target: r.__napiBindingTarget, same: r.getSocket('p') === s, count: r.getSocketCount(), from }))",
    'r.clearAll()'
  ].join('\n')], { cwd: project })
  assert.deepEqual(JSON.parse(r.stdout), { target: 'native', same: true, count: 1, from: `node_modules/${platformMeta.name}/${binaryFile}` })
})
