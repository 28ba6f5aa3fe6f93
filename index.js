// The package's entry point ("main"). It loads binding.js, the binding loader that
// `napi build --platform` generates (and that must not be edited by hand), and
// only changes what happens when no native binary can be loaded: instead of the
// generated loader's bare "Cannot find native binding" and its stack of
// require() errors, the error says which binary was looked for and what to do.
//
// The line `module.exports = require('./binding.js')` must stay exactly so:
// Node finds the named exports of a CommonJS module for
// `import { registerSocket } from 'baileys-socket-registry'` with
// cjs-module-lexer, which follows that re-export into binding.js.
'use strict'

// The addon asks `process.getBuiltinModule('worker_threads')` for the thread id it records in
// every session; that function exists from Node 20.16 only. On older versions this loader,
// which can require, hands the id over in a global that lives only while the addon loads.
const THREAD_ID_KEY = '__baileysSocketRegistryThreadId'
Object.defineProperty(globalThis, THREAD_ID_KEY, {
  value: require('node:worker_threads').threadId,
  configurable: true
})
try {
  module.exports = require('./binding.js')
} catch (error) {
  throw explainLoadError(error)
} finally {
  delete globalThis[THREAD_ID_KEY]
}

function explainLoadError (error) {
  const message = error && typeof error.message === 'string' ? error.message : ''
  if (!/^(Cannot find native binding|Failed to load native binding)/.test(message)) return error

  const { existsSync, readFileSync } = require('node:fs')
  const { join } = require('node:path')
  let pkg = {}
  try {
    pkg = JSON.parse(readFileSync(join(__dirname, 'package.json'), 'utf8'))
  } catch {}
  const name = pkg.name || 'baileys-socket-registry'
  const version = pkg.version || 'latest'
  const platform = currentPlatform()
  const supported = ((pkg.napi && pkg.napi.targets) || []).map(platformOfTriple).filter(Boolean)
  const isSupported = supported.includes(platform)
  const fromSource = existsSync(join(__dirname, 'Cargo.toml'))
  const where = __dirname

  const lines = [
    `${name}: no native binary for this platform (${platform}, Node ${process.version}) could be loaded.`,
    `Package directory: ${where}`
  ]
  const tried = loaderMessages(error)
  if (tried.length) lines.push('Tried:', ...tried.map((m) => `  - ${m}`))
  if (fromSource) {
    lines.push(
      'This is a source checkout (a clone, or a dependency linked to one) whose addon has not been built. To build it:',
      '  1. install the Rust toolchain (stable) with rustup: https://rustup.rs',
      "     (Linux/macOS: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh);",
      `  2. in ${where} run \`npm install\` (its "prepare" script builds the addon),`,
      '     or `npm run build` if its dependencies are already installed.'
    )
    if (isSupported) {
      lines.push(`Or use the prebuilt binary instead: npm install ${name}-${platform}@${version}`)
    }
  } else if (isSupported) {
    lines.push(
      `A prebuilt binary exists for ${platform}: it comes as the optional dependency ${name}-${platform},`,
      'which was not installed (installed with --omit=optional or --no-optional, or a lockfile made on',
      'another platform: https://github.com/npm/cli/issues/4828). Fix it with one of:',
      `  npm install ${name}-${platform}@${version}`,
      '  or remove node_modules and package-lock.json, then run npm install again.'
    )
  } else {
    lines.push(
      `No prebuilt binary is published for ${platform} (prebuilt: ${supported.join(', ') || 'none'}).`,
      'Build it from source: install the Rust toolchain (stable) with rustup (https://rustup.rs),',
      `then install ${name} from its git repository, whose "prepare" script builds the addon`,
      '(in a clone: `npm install`, which runs `npm run build`).'
    )
  }
  const wrapped = new Error(lines.join('\n'))
  wrapped.code = 'ERR_NATIVE_BINDING_NOT_FOUND'
  // The generated loader's own error (with every require() error in its `cause`
  // chain), kept for debugging but not as `cause`: Node would print that whole
  // chain under the message above.
  Object.defineProperty(wrapped, 'loaderError', { value: error, configurable: true, writable: true })
  return wrapped
}

// One line per load attempt, from the generated loader's chain of causes: the
// paths and packages it tried, and why a binary that exists failed to load.
function loaderMessages (error) {
  const out = []
  for (let e = error.cause, n = 0; e && n < 20; e = e.cause, n++) {
    const first = String(e.message || e).split('\n')[0]
    const missing = /^Cannot find module '([^']+)'/.exec(first)
    out.push(missing ? `${missing[1]}: not found` : first)
  }
  return out.reverse()
}

// The platformArchABI napi-rs uses in binary and package names, e.g. linux-x64-gnu.
function currentPlatform () {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function isMusl () {
  try {
    const report = process.report && process.report.getReport()
    if (report && report.header) return !report.header.glibcVersionRuntime
  } catch {}
  return false
}

// x86_64-unknown-linux-gnu -> linux-x64-gnu, aarch64-apple-darwin -> darwin-arm64, ...
function platformOfTriple (triple) {
  const arches = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' }
  const [cpu, , os, abi] = triple.split('-')
  const arch = arches[cpu]
  if (!arch) return null
  if (triple.includes('-linux-')) return `linux-${arch}-${(abi || '').startsWith('musl') ? 'musl' : 'gnu'}`
  if (triple.includes('-apple-darwin')) return `darwin-${arch}`
  if (triple.includes('-windows-')) return `win32-${arch}-msvc`
  if (os === 'freebsd') return `freebsd-${arch}`
  return null
}
