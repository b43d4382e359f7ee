// Browser test of the web console (runtime/api/ui), run by the Rust e2e
// test against a real platform: `node tests/browser/console.cjs`, with
//   NIMBUS_URL          the API's base URL (http://127.0.0.1:PORT)
//   NIMBUS_PLAYWRIGHT   the playwright-core package directory
//                       (scripts/install-playwright-core.sh prints it)
//   NIMBUS_CHROMIUM     the browser (default /usr/bin/chromium, Debian's)
//   NIMBUS_SCREENSHOTS  the directory for the PNG screenshots
//   NIMBUS_USER, NIMBUS_PASSWORD  an account this test registers in the UI
// It drives the console as a person would, through accessible names
// (labels, roles), so it also proves those exist. Every wait is bounded;
// there are no fixed sleeps. Success: one JSON line on stdout, exit 0.
// Failure: the error on stderr, {"ok": false, ...} on stdout,
// failure.png, exit 1.
'use strict';
const fs = require('fs');
const path = require('path');

const fail = (message) => {
  process.stderr.write(`console test: ${message}\n`);
  process.stdout.write(JSON.stringify({ ok: false, step: 'setup', error: message }) + '\n');
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`${name} must be set`);
const BASE = env('NIMBUS_URL').replace(/\/$/, '');
const { chromium } = (() => {
  try { return require(env('NIMBUS_PLAYWRIGHT')); } catch (e) { return fail(`cannot load playwright-core: ${e.message}`); }
})();
const CHROMIUM = env('NIMBUS_CHROMIUM', '/usr/bin/chromium');
const SHOTS = env('NIMBUS_SCREENSHOTS');
const USER = env('NIMBUS_USER');
const PASSWORD = env('NIMBUS_PASSWORD');
const WAIT = 30_000; // every single wait
const CHART_WAIT = 45_000; // stats refresh after each call and every 15 s
const WHOLE_RUN = 240_000; // the whole script

// The scalar `handle` fixture: its input is one number, its result that + 1.
const ADD_WAT = fs.readFileSync(path.join(__dirname, '../../runtime/engine/fixtures/add.wat'), 'utf8');
// Writes "hello from the guest" to stderr (its log) and answers 1: the
// fixture the Rust tests use too.
const HELLO_LOG_WAT = fs.readFileSync(
  path.join(__dirname, '../../runtime/engine/fixtures/hello_log.wat'), 'utf8');
const LOG_LINE = 'hello from the guest';

let currentStep = 'start';
const step = (name) => {
  currentStep = name;
  process.stderr.write(`console test: ${name}\n`);
};
const summary = { ok: true, user: USER, screenshots: [], console_errors: [] };

async function shot(page, name, fullPage = true) {
  await page.screenshot({ path: path.join(SHOTS, name), fullPage, timeout: WAIT });
  summary.screenshots.push(name);
}

// Wait until a locator's text is exactly `text` (whitespace trimmed).
async function waitForText(locator, text) {
  await locator.filter({ hasText: new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`) })
    .waitFor({ timeout: WAIT });
}

// Whether the locator's element has the focus.
const focused = (locator) => locator.evaluate((node) => node === document.activeElement, null, { timeout: WAIT });

async function main(page) {
  const byLabel = (label) => page.getByLabel(label, { exact: true });
  const button = (name) => page.getByRole('button', { name, exact: true });
  const h1 = (name) => page.getByRole('heading', { level: 1, name, exact: true });

  step('open the console');
  const response = await page.goto(`${BASE}/ui`, { waitUntil: 'load', timeout: WAIT });
  if (!response.ok()) throw new Error(`GET /ui answered ${response.status()}`);
  await h1('Sign in').waitFor({ timeout: WAIT });

  step('keyboard: Tab reaches username, password, Log in');
  const username = byLabel('Username');
  const password = byLabel('Password');
  const login = button('Log in');
  let tabs = 0;
  do {
    await page.keyboard.press('Tab');
    tabs += 1;
  } while (!(await focused(username)) && tabs < 6);
  if (!(await focused(username))) throw new Error('Tab never reached the Username field');
  await page.keyboard.press('Tab');
  if (!(await focused(password))) throw new Error('Tab after Username did not reach Password');
  await page.keyboard.press('Tab');
  if (!(await focused(login))) throw new Error('Tab after Password did not reach the Log in button');
  summary.keyboard = { tabs_to_username: tabs, order: ['Username', 'Password', 'Log in'] };

  step('register through the UI');
  await username.fill(USER, { timeout: WAIT });
  await password.fill(PASSWORD, { timeout: WAIT });
  await button('Register').click({ timeout: WAIT });
  await page.getByText(`Account ${USER} created`).waitFor({ timeout: WAIT });
  await shot(page, 'login.png');

  step('log in through the UI');
  await login.click({ timeout: WAIT });
  await h1('Functions').waitFor({ timeout: WAIT });
  await button('Log out').waitFor({ timeout: WAIT });

  // Deploy pasted WAT under a name; the console opens the new function.
  async function deploy(name, code) {
    await page.getByLabel(/^Name/).fill(name, { timeout: WAIT });
    await byLabel('Runtime').selectOption('wat', { timeout: WAIT });
    await byLabel('Code').fill(code, { timeout: WAIT });
    await button('Deploy').click({ timeout: WAIT });
    await h1(name).waitFor({ timeout: WAIT });
    const id = Number((page.url().match(/#\/functions\/(\d+)$/) || [])[1]);
    if (!(id > 0)) throw new Error(`after deploying ${name} the page is at ${page.url()}`);
    return id;
  }

  // Invoke the open function and wait for the expected result; answer
  // what the Result, Fuel and Duration fields show.
  // A <dd> (role definition) labelled by its <dt>.
  const field = (label) => page.getByRole('definition').and(byLabel(label));
  const result = field('Result');
  const fuel = field('Fuel');
  const duration = field('Duration');
  async function invoke(input, expected) {
    await byLabel('Input (JSON)').fill(input, { timeout: WAIT });
    await button('Invoke').click({ timeout: WAIT });
    await waitForText(result, expected);
    const shown = {
      result: (await result.textContent({ timeout: WAIT })).trim(),
      fuel: Number((await fuel.textContent({ timeout: WAIT })).replace(/[^0-9]/g, '')),
      duration: (await duration.textContent({ timeout: WAIT })).trim(),
    };
    if (!(shown.fuel > 0)) throw new Error(`the Fuel field shows ${shown.fuel}`);
    if (!/^\d+(\.\d+)? (ms|µs)$/.test(shown.duration)) throw new Error(`the Duration field shows "${shown.duration}"`);
    return shown;
  }

  step('deploy console-add (pasted WAT) and invoke it');
  const addId = await deploy('console-add', ADD_WAT);
  await page.getByText(`/fn/${USER}/console-add`).waitFor({ timeout: WAIT });
  const added = await invoke('41', '42');
  Object.assign(summary, { add_id: addId, add_result: added.result, fuel: added.fuel, duration: added.duration });
  await shot(page, 'invoke.png');

  step('client-side check of the JSON input');
  await byLabel('Input (JSON)').fill('{not json', { timeout: WAIT });
  await button('Invoke').click({ timeout: WAIT });
  await page.getByText('The input is not valid JSON').waitFor({ timeout: WAIT });

  step('deploy console-hello, open it from the list');
  await page.getByRole('button', { name: 'All functions' }).click({ timeout: WAIT });
  await h1('Functions').waitFor({ timeout: WAIT });
  await page.getByRole('button', { name: /console-add/ }).waitFor({ timeout: WAIT });
  const helloId = await deploy('console-hello', HELLO_LOG_WAT);
  summary.hello_id = helloId;
  await page.getByRole('button', { name: 'All functions' }).click({ timeout: WAIT });
  await page.getByRole('button', { name: /console-hello/ }).click({ timeout: WAIT });
  await h1('console-hello').waitFor({ timeout: WAIT });

  step('follow its logs, invoke it, see the line arrive');
  const follow = button('Follow logs');
  await follow.click({ timeout: WAIT });
  await page.getByText('Following: new entries appear below.').waitFor({ timeout: WAIT });
  await invoke('null', '1');
  const logPanel = page.getByRole('log', { name: 'Function logs' });
  await logPanel.getByText(LOG_LINE).waitFor({ timeout: WAIT });
  summary.log_line = LOG_LINE;
  await shot(page, 'logs.png');
  await button('Stop following').click({ timeout: WAIT });
  await follow.waitFor({ timeout: WAIT });
  if ((await follow.getAttribute('aria-pressed', { timeout: WAIT })) !== 'false') {
    throw new Error('the Follow logs button is still pressed after Stop following');
  }

  step('invoke console-add a few more times; its charts show the calls');
  await page.getByRole('button', { name: 'All functions' }).click({ timeout: WAIT });
  await page.getByRole('button', { name: /console-add/ }).click({ timeout: WAIT });
  await h1('console-add').waitFor({ timeout: WAIT });
  for (const n of [1, 2, 3]) await invoke(String(n), String(n + 1));
  // Four calls in all: the calls chart must count them all.
  await page.waitForFunction(() => {
    const chart = document.querySelector('svg[role="img"][aria-label^="Calls per minute"]');
    const calls = chart && Number((chart.getAttribute('aria-label').match(/(\d+) calls?/) || [])[1]);
    return chart && Number(chart.dataset.points) >= 1 && calls >= 4;
  }, null, { timeout: CHART_WAIT });
  const chart = (name) => page.getByRole('img', { name });
  const points = async (name) => Number(await chart(name).getAttribute('data-points', { timeout: WAIT }));
  summary.charts = {
    calls_label: await chart(/^Calls per minute/).getAttribute('aria-label', { timeout: WAIT }),
    calls_points: await points(/^Calls per minute/),
    latency_points: await points(/^Latency/),
    fuel_points: await points(/^Fuel per minute/),
  };
  for (const [name, n] of Object.entries(summary.charts)) {
    if (name.endsWith('_points') && !(n >= 1)) throw new Error(`chart ${name} is ${n}`);
  }
  await shot(page, 'charts.png');

  step('phone-sized screen: no horizontal scroll');
  await page.setViewportSize({ width: 375, height: 667 });
  await h1('console-add').waitFor({ timeout: WAIT });
  const scrollWidth = await page.evaluate(() => new Promise((resolve) => {
    requestAnimationFrame(() => resolve(document.documentElement.scrollWidth));
  }));
  if (scrollWidth > 375) throw new Error(`at 375 px wide the function view scrolls to ${scrollWidth} px`);
  const invokeBox = await button('Invoke').boundingBox({ timeout: WAIT });
  if (!invokeBox || invokeBox.height < 44) {
    throw new Error(`the Invoke button is ${invokeBox && invokeBox.height} px tall, not touch-sized`);
  }
  summary.phone_scroll_width = scrollWidth;
  await shot(page, 'phone.png');

  step('log out');
  await button('Log out').click({ timeout: WAIT });
  await h1('Sign in').waitFor({ timeout: WAIT });
  if (await page.evaluate(() => sessionStorage.length) !== 0) throw new Error('the token outlived Log out');
}

async function run() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: WAIT,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(WAIT);
    context.setDefaultNavigationTimeout(WAIT);
    page = await context.newPage();
    // Script errors and CSP violations fail the test; other console errors
    // (a failed request logs one) are reported.
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      if (/Content Security Policy/i.test(msg.text())) pageErrors.push(msg.text());
      else summary.console_errors.push(msg.text());
    });
    await main(page);
    if (pageErrors.length) throw new Error(`the page reported errors: ${pageErrors.join(' | ')}`);
  } catch (e) {
    if (page) {
      await page.screenshot({ path: path.join(SHOTS, 'failure.png'), fullPage: true, timeout: 10_000 })
        .catch(() => {});
    }
    throw e;
  } finally {
    await browser.close().catch(() => {});
  }
}

const deadline = setTimeout(() => {
  process.stderr.write(`console test: timed out after ${WHOLE_RUN / 1000} s at step "${currentStep}"\n`);
  process.exit(1);
}, WHOLE_RUN);

run().then(() => {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(0);
}, (e) => {
  clearTimeout(deadline);
  process.stderr.write(`console test failed at step "${currentStep}": ${e && e.stack || e}\n`);
  process.stdout.write(JSON.stringify({ ok: false, step: currentStep, error: String(e && e.message || e) }) + '\n');
  process.exit(1);
});
