using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Instruments;

namespace Monitoring.Stream.Hosting.DependencyInjection;

/// <summary>ASP.NET Core pieces of Monitoring.Stream: the HTTP request metrics and the dashboard data endpoint.</summary>
public static class MonitoringStreamApplicationBuilderExtensions
{
    /// <summary>Records every request's duration by method, route template and status (see <see cref="HttpRequestMetrics"/>).</summary>
    public static IApplicationBuilder UseMonitoringStreamHttpMetrics(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.UseMiddleware<HttpRequestMetrics>(app.ApplicationServices.GetRequiredService<MetricsCollector>(), app.ApplicationServices.GetRequiredService<HttpMetricsOptions>());
    }

    /// <summary>Serves <see cref="DashboardData"/> as JSON at <paramref name="pattern"/>; <c>?minutes=N</c> sets the window (default 60).</summary>
    public static IEndpointConventionBuilder MapMonitoringStreamDashboard(this IEndpointRouteBuilder endpoints, string pattern = "/monitoring/dashboard")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return endpoints.MapGet(pattern, async (HttpContext context, DashboardDataService dashboard) =>
        {
            TimeSpan window = int.TryParse(context.Request.Query["minutes"], out int minutes) && minutes > 0 ? TimeSpan.FromMinutes(minutes) : DashboardDataService.DefaultWindow;
            DashboardData data = await dashboard.GetAsync(window, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(data, DashboardJsonContext.Default.DashboardData);
        });
    }
}
