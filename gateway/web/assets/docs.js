// /docs: Swagger UI (vendored from npm's swagger-ui-dist) over the gateway's
// generated OpenAPI document, with "Try it out" on every operation.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    // Deep links are off: Swagger UI warns (console.error) on every operation
    // id with an underscore in one, and ours are Service_Method.
    deepLinking: false,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    persistAuthorization: false,
    // The document is the gateway's own: no call to an outside validator.
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
