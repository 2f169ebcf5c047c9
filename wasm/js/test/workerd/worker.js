// The worker that test/run-workerd.mjs bundles and serves with workerd: the example app
// (example/worker.js, as deployed) plus two routes that run the suite's 'api' tests inside
// workerd. The 'http' tests are run by the Node driver against the app over HTTP.
import * as rotauth from 'rotauth';
import * as hono from 'rotauth/hono';
import app from '../../example/worker.js';
import { suite } from '../suite.js';

function tests(env) {
  return suite({ rotauth, hono, vectors: env.VECTORS, fetch: undefined });
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/__suite/list') {
      return Response.json(tests(env).map(({ name, kind }) => ({ name, kind })));
    }
    if (url.pathname === '/__suite/run') {
      const test = tests(env).find(({ name }) => name === url.searchParams.get('name'));
      if (test === undefined || test.kind !== 'api') return Response.json({ ok: false, error: 'no such api test' }, { status: 404 });
      try {
        await test.fn();
        return Response.json({ ok: true });
      } catch (error) {
        return Response.json({ ok: false, error: String(error?.stack ?? error) });
      }
    }
    return app.fetch(request, env, ctx);
  },
};
