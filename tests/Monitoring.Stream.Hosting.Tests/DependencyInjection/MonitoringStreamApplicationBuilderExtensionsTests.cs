using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.DependencyInjection;

public class MonitoringStreamApplicationBuilderExtensionsTests
{
    [Fact]
    public async Task DashboardEndpoint_AppWithHttpMetrics_ServesTheJsonShapeAndCountsRequests()
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0");
        builder.Services.AddMonitoringStream(o =>
        {
            o.ArrowStoreEnabled = false;
            o.SystemMetricsEnabled = false;
        });
        await using WebApplication app = builder.Build();
        app.UseMonitoringStreamHttpMetrics();
        app.MapMonitoringStreamDashboard();
        app.MapGet("/ping", () => Results.Ok("pong"));
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        using var client = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(10) };

        for (int i = 0; i < 3; i++)
        {
            (await client.GetAsync("/ping")).EnsureSuccessStatusCode();
        }

        HttpResponseMessage response = await client.GetAsync("/monitoring/dashboard?minutes=5");
        string json = await response.Content.ReadAsStringAsync();
        await app.StopAsync();

        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using JsonDocument doc = JsonDocument.Parse(json);
        Assert.Equal(300, doc.RootElement.GetProperty("windowSeconds").GetDouble());
        Assert.Equal("Healthy", doc.RootElement.GetProperty("health").GetProperty("status").GetString());
        Assert.Contains(doc.RootElement.GetProperty("engine").GetProperty("sinks").EnumerateArray(), s => s.GetProperty("name").GetString() == "recent-window-index");
        // After the graceful stop every window is in the index, the three pings with it.
        MetricStatistics? ping = app.Services.GetRequiredService<MetricStatisticsService>().GetMatching(HttpRequestMetrics.DurationMetric,
            LabelSet.Create(new Label("route", "/ping")), TimeSpan.FromHours(1));
        Assert.Equal(3, ping!.Count);
    }
}
