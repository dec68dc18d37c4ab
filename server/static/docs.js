// Swagger UI (vendored swagger-ui-dist) over this server's own /openapi.json.
window.ui = window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  validatorUrl: null,
});
