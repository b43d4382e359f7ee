// A `handler` function: logs with console.log (goes to the function's logs,
// not the result), awaits a promise, and returns an array.
//
// Deploy and invoke:
//   nimbus deploy greet.js --name greet
//   nimbus invoke <id> '{"name": "Ada", "languages": ["en", "es"]}'
//   nimbus logs <id>
async function handler(input) {
  const name = input?.name ?? "world";
  console.log(`greeting ${name}`);
  const greetings = { en: "Hello", es: "Hola", ca: "Hola", fr: "Bonjour" };
  const languages = await Promise.resolve(input?.languages ?? ["en"]);
  return languages.map((lang) => `${greetings[lang] ?? greetings.en}, ${name}!`);
}
