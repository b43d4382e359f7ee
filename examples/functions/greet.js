// A `handler` function: logs with console.log (goes to the function's logs,
// not the result), awaits a promise, returns an array, and reads its default
// language from the function's configuration (`process.env`).
//
// Deploy and invoke:
//   nimbus deploy greet.js --name greet
//   nimbus invoke <id> '{"name": "Ada", "languages": ["en", "es"]}'
//   nimbus logs <id>
//   nimbus config set <id> LANGUAGE=es
//   nimbus invoke <id> '{"name": "Ada"}'     # ["Hola, Ada!"]
async function handler(input) {
  const name = input?.name ?? "world";
  console.log(`greeting ${name}`);
  const greetings = { en: "Hello", es: "Hola", ca: "Hola", fr: "Bonjour" };
  const fallback = process.env.LANGUAGE ?? "en";
  const languages = await Promise.resolve(input?.languages ?? [fallback]);
  return languages.map((lang) => `${greetings[lang] ?? greetings.en}, ${name}!`);
}
