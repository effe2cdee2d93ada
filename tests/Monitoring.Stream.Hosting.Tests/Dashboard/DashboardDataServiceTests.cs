using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Tests.Support;

namespace Monitoring.Stream.Hosting.Tests.Dashboard;

public class DashboardDataServiceTests
{
    private const long T0 = EngineFixture.T0;

    private static async Task ServeAsync(HttpRequestMetrics middleware, string method, string route, int status)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = method;
        context.SetEndpoint(new RouteEndpoint(_ => Task.CompletedTask, RoutePatternFactory.Parse(route), 0, EndpointMetadataCollection.Empty, route));
        context.Response.StatusCode = status;
        await middleware.InvokeAsync(context);
    }

    [Fact]
    public async Task GetAsync_OneHour_EverySectionFromTheEngineAndStableJson()
    {
        using var proc = new TempDirectory();
        Directory.CreateDirectory(Path.Combine(proc.Path, "net"));
        File.WriteAllText(Path.Combine(proc.Path, "meminfo"), "MemTotal: 1000 kB\nMemAvailable: 400 kB\n");
        await using var engine = new EngineFixture(nowUnixMs: T0 + 3_600_000);
        using var sampler = new SystemMetricsSampler(engine.Collector, new SystemMetricsOptions { ProcRoot = proc.Path }, engine.Time, start: false);
        using var self = new EngineSelfMetrics(engine.Collector);
        var middleware = new HttpRequestMetrics(_ => Task.CompletedTask, engine.Collector, new HttpMetricsOptions());
        var documents = new DocumentMetrics(engine.Collector);
        var publisher = new HealthMetricsPublisher(engine.Collector);
        var services = new ServiceCollection().AddLogging();
        services.AddHealthChecks()
            .AddCheck("engine", new EngineHealthCheck(engine.Pipeline, time: engine.Time))
            .AddCheck("database", () => HealthCheckResult.Degraded("replica lag 3 s"));
        HealthCheckService health = services.BuildServiceProvider().GetRequiredService<HealthCheckService>();
        var dashboard = new DashboardDataService(engine.Queries, engine.Pipeline, health, publisher, engine.Time);

        sampler.Sample();
        self.Record();
        for (int i = 0; i < 6; i++)
        {
            await ServeAsync(middleware, "GET", "/orders/{id}", 200);
        }

        await ServeAsync(middleware, "POST", "/orders", 201);
        await ServeAsync(middleware, "GET", "/orders/{id}", 404);
        documents.Record("invoice", "ok", TimeSpan.FromSeconds(2), 4000);
        documents.Record("invoice", "ok", TimeSpan.FromSeconds(4), 2000);
        documents.Record("invoice", "failed", TimeSpan.FromSeconds(1), 10);
        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();
        engine.Time.Advance(TimeSpan.FromSeconds(20));
        self.Record();
        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();
        for (int i = 0; i < 4; i++)
        {
            engine.Time.Advance(TimeSpan.FromSeconds(5));   // the clock's watermark closes the windows written so far
        }

        await Eventually.TrueAsync(() => engine.Index.Aggregates > 0 && engine.Pipeline.GetMetrics().Sinks.All(s => s.QueueDepth == 0), "windows reach the index");
        await Eventually.TrueAsync(() => engine.Queries.GetMatching(EngineSelfMetrics.AcceptedMetric, Model.LabelSet.Empty, TimeSpan.FromHours(1))?.Count == 2, "both self-metric records are queryable");

        DashboardData data = await dashboard.GetAsync();
        string json = JsonSerializer.Serialize(data, DashboardJsonContext.Default.DashboardData);

        Assert.Equal(3600, data.WindowSeconds);
        Assert.Equal("Degraded", data.Health!.Status);
        Assert.Equal(["database", "engine"], data.Health.Checks.Select(c => c.Name));
        Assert.Equal(60.0, data.System.MemoryUsedPercent!.Last);
        Assert.Null(data.System.CpuPercent);
        Assert.Equal(8, data.Requests.Count);
        Assert.Equal(8 / 3600.0, data.Requests.RatePerSecond, 1e-12);
        Assert.Equal(new Dictionary<string, long> { ["200"] = 6, ["201"] = 1, ["404"] = 1 }, data.Requests.ByStatusCode);
        Assert.Equal(7, data.Requests.Routes.Single(r => r.Method == "GET" && r.Route == "/orders/{id}").Count);
        Assert.Equal(3, data.Documents.Count);
        DocumentTypeData ok = data.Documents.ByTypeAndStatus.Single(d => d.Status == "ok");
        Assert.Equal(2, ok.Count);
        Assert.Equal(3.0, ok.DurationSeconds!.Mean);
        Assert.Equal(3000.0, ok.SizeBytes!.Mean);
        Assert.Equal(engine.Pipeline.GetMetrics().Accepted, data.Engine.Accepted);
        Assert.NotNull(data.Engine.AcceptedPerSecond);
        Assert.Contains(data.Engine.Sinks, s => s.Name == engine.Index.Name && s.State == "Ok");

        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement root = doc.RootElement;
        Assert.Equal(["generatedAt", "windowSeconds", "from", "to", "health", "system", "requests", "documents", "engine"], root.EnumerateObject().Select(p => p.Name));
        Assert.Equal("Degraded", root.GetProperty("health").GetProperty("status").GetString());
        Assert.Equal(6, root.GetProperty("requests").GetProperty("byStatusCode").GetProperty("200").GetInt64());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("system").GetProperty("cpuPercent").ValueKind);
        Assert.Equal(60.0, root.GetProperty("system").GetProperty("memoryUsedPercent").GetProperty("last").GetDouble());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("documents").GetProperty("byTypeAndStatus")[0].GetProperty("durationSeconds").GetProperty("stdDevSample").ValueKind);
    }
}
