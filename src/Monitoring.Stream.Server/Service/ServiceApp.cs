using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.FileProviders;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Server.Api;

namespace Monitoring.Stream.Server.Service;

/// <summary>The request pipeline of the service: problem details without exception detail, bearer token, metrics, static page, API, health.</summary>
internal static class ServiceApp
{
    /// <summary>Sets up middleware and endpoints.</summary>
    public static void Configure(WebApplication app, ServerSettings settings)
    {
        ServerMetrics metrics = app.Services.GetRequiredService<ServerMetrics>();
        // Created now, not on the first request, so /metrics shows the ingest gauges from the start.
        _ = app.Services.GetRequiredService<IngestService>();
        // Unhandled exceptions become a bare 500 problem: no stack trace, no exception message.
        app.UseExceptionHandler();
        app.UseRouting();
        app.Use(async (context, next) =>
        {
            await next(context).ConfigureAwait(false);
            string route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "other";
            metrics.CountRequest(route, context.Response.StatusCode);
        });

        if (settings.ApiToken is not null)
        {
            byte[] expected = Encoding.UTF8.GetBytes("Bearer " + settings.ApiToken);
            app.Use(async (context, next) =>
            {
                PathString path = context.Request.Path;
                if ((path.StartsWithSegments("/api") || path.StartsWithSegments("/metrics")) &&
                    !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(context.Request.Headers.Authorization.ToString()), expected))
                {
                    metrics.CountRefused("unauthorized");
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    await Results.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized",
                        detail: "This endpoint needs 'Authorization: Bearer <token>' (the service's ApiToken).").ExecuteAsync(context).ConfigureAwait(false);
                    return;
                }

                await next(context).ConfigureAwait(false);
            });
        }

        app.UseMonitoringStreamHttpMetrics();
        bool page = Directory.Exists(app.Environment.WebRootPath);
        if (page)
        {
            app.UseDefaultFiles();
            app.UseStaticFiles();
        }

        app.MapOpenApi("/openapi/{documentName}.json");
        ApiEndpoints.Map(app);
        app.MapHealthChecks("/health", Health(null));
        app.MapHealthChecks("/health/live", Health(_ => false));
        app.MapHealthChecks("/health/ready", Health(null));
        app.MapFallback(async context =>
        {
            PathString path = context.Request.Path;
            IFileInfo index = app.Environment.WebRootFileProvider.GetFileInfo("index.html");
            if (page && index.Exists && HttpMethods.IsGet(context.Request.Method) && !path.StartsWithSegments("/api") && !path.StartsWithSegments("/metrics") && !path.StartsWithSegments("/health"))
            {
                context.Response.ContentType = "text/html; charset=utf-8";
                await context.Response.SendFileAsync(index).ConfigureAwait(false);
                return;
            }

            await Results.Problem(statusCode: StatusCodes.Status404NotFound, title: "Not found", detail: $"No endpoint at {context.Request.Method} {path}; see /openapi/v1.json.")
                .ExecuteAsync(context).ConfigureAwait(false);
        });
    }

    /// <summary>Marks the service ready once Kestrel listens.</summary>
    public static void MarkReady(WebApplication app) => app.Services.GetRequiredService<ReadinessCheck>().MarkStarted();

    private static HealthCheckOptions Health(Func<HealthCheckRegistration, bool>? predicate) => new()
    {
        Predicate = predicate,
        ResultStatusCodes =
        {
            [HealthStatus.Healthy] = StatusCodes.Status200OK,
            [HealthStatus.Degraded] = StatusCodes.Status200OK,
            [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
        },
        ResponseWriter = (context, report) => Results.Json(new HealthResponse(report.Status.ToString(),
            [.. report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => new HealthCheckEntry(e.Key, e.Value.Status.ToString(), e.Value.Description))]))
            .ExecuteAsync(context),
    };
}
