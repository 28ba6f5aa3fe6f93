// Typings of the package entry (index.js). The functions implemented in Rust, and the types
// they use, are declared in binding.d.ts, which napi-rs generates from the Rust doc comments;
// functions implemented in index.js are declared here. __test__/typings.spec.mjs checks that
// the names declared here and in binding.d.ts are exactly what index.js exports.
export * from './binding'
