// Checks .github/workflows/ci.yml against package.json, beyond what the schema
// validator (action-validator) can know: every target in `napi.targets` is built
// exactly once and tested on Node 20, 22 and 24 with the node half of `npm test`;
// a v* tag publishes, with provenance, after every test passed.
//
// Run: node .ci/check-workflow.mjs [workflow.yml]   (exit 1 and one line per problem)
// __test__/package.spec.mjs imports checkWorkflow() to show that each check can fail.
//
// The YAML parser is js-yaml, which is installed as a dependency of @napi-rs/cli
// (pinned in package.json and the lockfile): no dependency is added for it.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { load } from 'js-yaml'

export const NODE_VERSIONS = ['20', '22', '24']

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
export const WORKFLOW = join(root, '.github', 'workflows', 'ci.yml')

/** The node half of `npm test` (what follows `cargo test ... &&`). */
export function nodeTestCommand (pkg) {
  const parts = String(pkg.scripts?.test ?? '').split('&&').map((s) => s.trim())
  return parts.find((p) => p.startsWith('node --test')) ?? null
}

const steps = (job) => (Array.isArray(job?.steps) ? job.steps : [])
const runs = (job) => steps(job).map((s) => (typeof s.run === 'string' ? s.run : '')).join('\n')
const list = (v) => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v])

/**
 * Returns the problems found (strings); an empty array when the workflow is right.
 * `workflow` is the parsed YAML, `pkg` the parsed package.json.
 */
export function checkWorkflow (workflow, pkg) {
  const problems = []
  const targets = list(pkg.napi?.targets)
  if (targets.length === 0) problems.push('package.json has no napi.targets')
  const jobs = workflow?.jobs ?? {}

  // Builds: one matrix entry per target, with a napi build for exactly that target.
  const builds = list(jobs.build?.strategy?.matrix?.settings)
  if (builds.length === 0) problems.push('jobs.build.strategy.matrix.settings is missing or empty')
  const built = builds.map((b) => b?.target)
  for (const t of targets) {
    const n = built.filter((b) => b === t).length
    if (n !== 1) problems.push(`build: target ${t} has ${n} build entries (expected 1)`)
  }
  for (const b of builds) {
    if (!targets.includes(b?.target)) problems.push(`build: ${b?.target} is not in napi.targets`)
    const cmd = String(b?.build ?? '')
    if (!/\bnapi build\b/.test(cmd) || !cmd.includes('--platform') || !cmd.includes('--release') || !new RegExp(`--target ${b?.target}(\\s|$)`).test(cmd)) {
      problems.push(`build: ${b?.target}: "${cmd}" is not a napi build --platform --release --target ${b?.target}`)
    }
    if (!b?.host) problems.push(`build: ${b?.target} has no host`)
  }
  const upload = steps(jobs.build).find((s) => String(s.uses ?? '').startsWith('actions/upload-artifact@'))
  if (!upload || !String(upload.with?.name ?? '').includes('${{ matrix.settings.target }}')) {
    problems.push('build: no upload-artifact step named after matrix.settings.target')
  }

  // Tests: every target on every Node version, with the node specs of `npm test`,
  // after the build; musl targets inside Alpine.
  const command = nodeTestCommand(pkg)
  if (!command) problems.push('package.json scripts.test has no `node --test ...` part')
  const testJobs = Object.entries(jobs).filter(([name]) => name === 'test' || name.startsWith('test-'))
  if (testJobs.length === 0) problems.push('no test jobs (jobs.test, jobs.test-*)')
  const tested = new Set()
  for (const [name, job] of testJobs) {
    const matrix = job?.strategy?.matrix ?? {}
    const jobTargets = [...list(matrix.target), ...list(matrix.settings).map((s) => s?.target)]
    for (const t of jobTargets) tested.add(t)
    const nodes = list(matrix.node).map(String)
    if (nodes.join() !== NODE_VERSIONS.join()) problems.push(`${name}: node versions ${nodes.join(', ') || 'none'} (expected ${NODE_VERSIONS.join(', ')})`)
    if (!list(job?.needs).includes('build')) problems.push(`${name}: does not need the build job`)
    if (command && !runs(job).includes(command)) problems.push(`${name}: does not run "${command}"`)
    const download = steps(job).find((s) => String(s.uses ?? '').startsWith('actions/download-artifact@'))
    if (!download) problems.push(`${name}: does not download the built binary`)
    const musl = jobTargets.filter((t) => String(t).endsWith('-musl'))
    if (musl.length > 0 && !/node:\$\{\{ matrix\.node \}\}-alpine/.test(runs(job))) {
      problems.push(`${name}: tests ${musl.join(', ')} outside an Alpine container`)
    }
  }
  for (const t of targets) if (!tested.has(t)) problems.push(`test: target ${t} is not tested`)
  for (const t of tested) if (!targets.includes(t)) problems.push(`test: ${t} is not in napi.targets`)

  // Publishing: on a v* tag, after every test, with provenance.
  const tags = list(workflow?.on?.push?.tags)
  if (!tags.includes('v*')) problems.push('on.push.tags does not include v*')
  const publish = jobs.publish
  if (!publish) {
    problems.push('no publish job')
  } else {
    if (!String(publish.if ?? '').includes("startsWith(github.ref, 'refs/tags/v')")) problems.push('publish: does not run only on v* tags')
    if (publish.permissions?.['id-token'] !== 'write') problems.push('publish: permissions.id-token is not write (provenance)')
    const needs = list(publish.needs)
    for (const [name] of [...testJobs, ['lint']]) if (!needs.includes(name)) problems.push(`publish: does not need ${name}`)
    const text = runs(publish)
    if (!text.includes('npm run artifacts')) problems.push('publish: does not run npm run artifacts (napi artifacts)')
    const pre = steps(publish).find((s) => String(s.run ?? '').includes('npm run prepublishOnly'))
    if (!pre) problems.push('publish: does not run npm run prepublishOnly (napi prepublish)')
    else if (String(pre.env?.NPM_CONFIG_PROVENANCE) !== 'true') problems.push('publish: the platform packages are published without NPM_CONFIG_PROVENANCE=true')
    if (!/npm publish --provenance --access public --ignore-scripts/.test(text)) problems.push('publish: no `npm publish --provenance --access public --ignore-scripts` of the root package')
    if (!/prepublish/.test(pkg.scripts?.prepublishOnly ?? '')) problems.push('package.json scripts.prepublishOnly is not napi prepublish')
  }
  return problems
}

function main () {
  const file = process.argv[2] ?? WORKFLOW
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const problems = checkWorkflow(load(readFileSync(file, 'utf8')), pkg)
  for (const p of problems) console.error(`${file}: ${p}`)
  if (problems.length > 0) process.exit(1)
  console.log(`${file}: ${list(pkg.napi?.targets).length} targets built, tested on Node ${NODE_VERSIONS.join(', ')}, published on v* tags`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main()
