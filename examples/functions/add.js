// The seed's own function, as it was written: a function body with `input` bound.
//
// Deploy and invoke (compiled to WebAssembly on upload):
//   nimbus deploy add.js --name add-js
//   nimbus invoke <id> 10             # 11
return input + 1;
