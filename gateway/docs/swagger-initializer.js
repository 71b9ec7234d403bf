// Swagger UI at the gateway's /docs (gateway/docs/index.html loads this file).
//
// The documents are listed by /docs/swagger-config.json, which the gateway renders from the
// services it routes (one /<service>/v1/openapi.json each, in GATEWAY_SERVICES's order), so
// a service added to the gateway appears here with no change to this file. Each document's
// `servers` is the service's prefix at the gateway, so "Try it out" calls
// /<service>/v1/... through the gateway, with the token given to "Authorize".
//
// The services' documents are OpenAPI 3.1; the Swagger UI the swagger-ui-bundle package ships
// (4.x) renders OpenAPI 3.0 only, so each document is shown as its 3.0 equivalent: the version
// field, `null` as a type written as `nullable`, `const` as a one-value `enum`, numeric
// exclusive bounds as 3.0's flags, and a schema's `examples` list as its `example`. The
// documents themselves (what /<service>/v1/openapi.json serves) are left as they are.
"use strict";

(function () {
  var DOCUMENT = /\/v1\/openapi\.json$/;

  function isNullSchema(schema) {
    return schema !== null && typeof schema === "object" && schema.type === "null" &&
      Object.keys(schema).length === 1;
  }

  // A JSON Schema 2020-12 (OpenAPI 3.1) value as OpenAPI 3.0 reads it, recursively.
  function asOpenApi30(node) {
    if (Array.isArray(node)) {
      return node.map(asOpenApi30);
    }
    if (node === null || typeof node !== "object") {
      return node;
    }
    var out = {};
    Object.keys(node).forEach(function (key) {
      out[key] = asOpenApi30(node[key]);
    });
    if (Array.isArray(out.type)) {
      var types = out.type.filter(function (type) { return type !== "null"; });
      if (types.length < out.type.length) {
        out.nullable = true;
      }
      if (types.length === 1) {
        out.type = types[0];
      } else {
        delete out.type;
        out.anyOf = types.map(function (type) { return { type: type }; });
      }
    }
    ["anyOf", "oneOf"].forEach(function (key) {
      if (!Array.isArray(out[key])) {
        return;
      }
      var rest = out[key].filter(function (schema) { return !isNullSchema(schema); });
      if (rest.length === out[key].length) {
        return;
      }
      out.nullable = true;
      if (rest.length === 1) {
        delete out[key];
        if (rest[0].$ref !== undefined) {
          out.allOf = [rest[0]];
        } else {
          Object.keys(rest[0]).forEach(function (name) {
            if (!(name in out)) {
              out[name] = rest[0][name];
            }
          });
        }
      } else {
        out[key] = rest;
      }
    });
    if (Object.prototype.hasOwnProperty.call(out, "const") && typeof out.const !== "object") {
      out.enum = [out.const];
      delete out.const;
    }
    ["Minimum", "Maximum"].forEach(function (bound) {
      var exclusive = "exclusive" + bound;
      if (typeof out[exclusive] === "number") {
        out[bound.toLowerCase()] = out[exclusive];
        out[exclusive] = true;
      }
    });
    if (Array.isArray(out.examples)) {
      if (out.examples.length > 0 && !("example" in out)) {
        out.example = out.examples[0];
      }
      delete out.examples;
    }
    return out;
  }

  // Swagger UI passes every response through this: a document is shown as 3.0.
  function showDocumentAs30(response) {
    var path;
    try {
      path = new URL(response.url, window.location.href).pathname;
    } catch (error) {
      return response;
    }
    if (!response.ok || !DOCUMENT.test(path) || typeof response.text !== "string") {
      return response;
    }
    var spec;
    try {
      spec = JSON.parse(response.text);
    } catch (error) {
      return response;
    }
    if (typeof spec.openapi !== "string" || spec.openapi.indexOf("3.1.") !== 0) {
      return response;
    }
    var shown = asOpenApi30(spec);
    shown.openapi = "3.0.3";
    response.text = JSON.stringify(shown);
    response.data = response.text;
    response.body = shown;
    response.obj = shown;
    return response;
  }

  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
      configUrl: "/docs/swagger-config.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      plugins: [SwaggerUIBundle.plugins.DownloadUrl],
      layout: "StandaloneLayout",
      // No badge from validator.swagger.io: the page talks to this origin only.
      validatorUrl: null,
      tryItOutEnabled: false,
      displayRequestDuration: true,
      responseInterceptor: showDocumentAs30
    });
  });
}());
