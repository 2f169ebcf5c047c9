// Browser bundles of the clients that ship only as CommonJS for a bundler, built in memory
// with esbuild (pinned in package.json) by clients.test.mjs before Chromium starts, and served
// by the pages' origin. Test fixtures only: the server's own page has no build step.
//
// - devise-token-auth-client: its dist is a webpack CommonJS build that requires axios 0.17,
//   lodash, qs, urijs, js-cookie and @babel/runtime helpers (the last undeclared in its
//   package.json, hence pinned in ours). The bundle exposes the library's exports as
//   `window.DeviseTokenAuthClient`; the page configures it as its README shows.
// - redux-token-auth: TypeScript output (CommonJS) for React 15 + Redux 3 + redux-thunk and
//   axios 0.16. It sets the auth headers on axios's default instance, so the app must make
//   its requests with that same axios: in an app npm dedupes them, here the alias gives the
//   bundle one axios, the one redux-token-auth requires. The bundle is the app a user writes
//   (README steps 1-3: reducer, thunk store, generateAuthActions, verifyCredentials at start,
//   a connected component), configured from the page through `window.reduxTokenAuthConfig`.
import { build } from "esbuild";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

const entries = {
  "devise-token-auth-client.js": {
    contents: `import * as lib from "devise-token-auth-client";
window.DeviseTokenAuthClient = lib;`,
  },
  "redux-token-auth-app.js": {
    alias: { axios: "./node_modules/redux-token-auth/node_modules/axios" },
    contents: `import React from "react";
import ReactDOM from "react-dom";
import { createStore, applyMiddleware, combineReducers } from "redux";
import thunk from "redux-thunk";
import { Provider, connect } from "react-redux";
import { generateAuthActions, reduxTokenAuthReducer } from "redux-token-auth";
import axios from "axios";

const config = window.reduxTokenAuthConfig;
const initialState = {
  reduxTokenAuth: { currentUser: { isLoading: false, isSignedIn: false, attributes: { uid: null, provider: null } } },
};
const store = createStore(combineReducers({ reduxTokenAuth: reduxTokenAuthReducer }), initialState, applyMiddleware(thunk));
const actions = generateAuthActions({
  authUrl: config.apiUrl + "/auth",
  userAttributes: { uid: "uid", provider: "provider" },
  userRegistrationAttributes: {},
});
actions.verifyCredentials(store);

const Status = connect((state) => ({ user: state.reduxTokenAuth.currentUser }))(({ user }) =>
  React.createElement("p", { id: "status" },
    user.isLoading ? "loading" : user.isSignedIn ? "signed in as " + user.attributes.uid : "signed out"));
ReactDOM.render(React.createElement(Provider, { store }, React.createElement(Status)), document.getElementById("app"));

window.app = { store, actions, axios };
window.ready = true;`,
  },
};

// { "name.js": Buffer } for the pages' server.
export async function bundleClients() {
  const out = {};
  for (const [name, { contents, alias }] of Object.entries(entries)) {
    const result = await build({
      stdin: { contents, resolveDir: here, sourcefile: name, loader: "js" },
      absWorkingDir: here,
      bundle: true,
      write: false,
      format: "iife",
      platform: "browser",
      target: "chrome100",
      define: { "process.env.NODE_ENV": '"production"' },
      alias: alias || {},
      logLevel: "silent",
    });
    out[name] = Buffer.from(result.outputFiles[0].contents);
  }
  return out;
}
