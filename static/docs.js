// The interactive API page, /docs: Swagger UI on this server's own /openapi.json.
// A file rather than an inline script, so that the page's CSP can say script-src 'self'.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Swagger UI would otherwise show a badge image fetched from validator.swagger.io.
    validatorUrl: null,
  });
});
