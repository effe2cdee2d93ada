using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Tests.Probe;

/// <summary>
/// The hosting layer of docs/sdk.md and docs/configuration.md as an application wires it: two hosts in one process,
/// health thresholds out of range, checks that throw, hang or ignore their cancellation, the dashboard's documented JSON
/// shape, an empty engine and window parameters at their extremes.
/// </summary>
public class HostingBlackBoxTests
{
    private const long T0 = EngineFixture.T0;

    private static IHost Build(Dictionary<string, string?> settings, Action<IServiceCollection>? more = null)
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        builder.Services.AddMonitoringStream(o => o.SystemMetricsEnabled = false);
        more?.Invoke(builder.Services);
        return builder.Build();
    }

    [Fact]
    public async Task TwoHostsInOneProcess_EachItsOwnEngineBothBridgeTheSameMeter()
    {
        string meterName = "Probe.TwoHosts." + Guid.NewGuid().ToString("N");
        Dictionary<string, string?> settings = new()
        {
            ["MonitoringStream:ArrowStoreEnabled"] = "false",
            ["MonitoringStream:Pipeline:ShardCount"] = "1",
            ["MonitoringStream:Bridge:Meters:0"] = meterName,
        };
        using IHost a = Build(settings);
        using IHost b = Build(settings);
        await a.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));

        a.Services.GetRequiredService<MetricsCollector>().CreateCounter("probe_only_a_total").Add(5);
        b.Services.GetRequiredService<MetricsCollector>().CreateCounter("probe_only_b_total").Add(7);
        using var meter = new Meter(meterName);
        meter.CreateCounter<long>("probe.shared").Add(3, new KeyValuePair<string, object?>("k", "v"));

        var stopwatch = Stopwatch.StartNew();
        await a.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        await b.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.InRange(stopwatch.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(15));

        MetricStatisticsService qa = a.Services.GetRequiredService<MetricStatisticsService>();
        MetricStatisticsService qb = b.Services.GetRequiredService<MetricStatisticsService>();
        TimeSpan span = TimeSpan.FromMinutes(5);
        Assert.Equal(5, qa.GetMatching("probe_only_a_total", LabelSet.Empty, span)!.Sum);
        Assert.Null(qb.GetMatching("probe_only_a_total", LabelSet.Empty, span));
        Assert.Equal(7, qb.GetMatching("probe_only_b_total", LabelSet.Empty, span)!.Sum);
        Assert.Null(qa.GetMatching("probe_only_b_total", LabelSet.Empty, span));
        Assert.Equal(3, qa.GetMatching("probe_shared", LabelSet.Empty, span)!.Sum);
        Assert.Equal(3, qb.GetMatching("probe_shared", LabelSet.Empty, span)!.Sum);
        Assert.NotSame(a.Services.GetRequiredService<MetricsCollector>().Pipeline, b.Services.GetRequiredService<MetricsCollector>().Pipeline);

        // After the host stopped, the application's instruments refuse (WriterClosed) and never throw.
        MetricsCollector stopped = a.Services.GetRequiredService<MetricsCollector>();
        Assert.Equal(RejectReason.WriterClosed, stopped.CreateCounter("probe_only_a_total").Add(1));
        Assert.Equal(RejectReason.WriterClosed, stopped.CreateHistogram("probe_after_host_stop", ["k"]).Bind("v").Record(1));
        Exception? afterStop = Record.Exception(() => meter.CreateCounter<long>("probe.after.stop").Add(1));
        Assert.Null(afterStop);
    }

    [Theory]
    [InlineData("Health:ShardQueueFillDegraded", "1.5")]
    [InlineData("Health:ShardQueueFillUnhealthy", "-0.1")]
    [InlineData("Health:DropRateDegraded", "NaN")]
    [InlineData("Health:DropRateUnhealthy", "2")]
    [InlineData("Health:LateRateUnhealthy", "Infinity")]
    [InlineData("Health:SinkStalledDegradedAfter", "-00:00:01")]
    [InlineData("Health:SinkStalledDegradedAfter", "00:00:00")]
    [InlineData("Health:SinkStalledDegradedAfter", "00:05:00")]   // beyond its unhealthy pair (2 min)
    [InlineData("Health:SinkStalledUnhealthyAfter", "00:00:10")]  // below its degraded pair (30 s)
    public async Task Start_HealthThresholdOutOfItsDocumentedRange_FailsNamingTheSetting(string setting, string value)
    {
        // configuration.md: "each pair: fractions in [0, 1], degraded ≤ unhealthy"; spans "positive, degraded ≤ unhealthy";
        // sdk.md: "a bad value stops the start with a message that names it as configuration spells it".
        using IHost host = Build(new() { ["MonitoringStream:ArrowStoreEnabled"] = "false", ["MonitoringStream:" + setting] = value });

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));

        Assert.Contains("MonitoringStream:" + setting, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dashboard_ChecksThatThrowAndHang_WorstWinsAndEachIsReportedWithinTheTimeout()
    {
        // sdk.md: "a check that throws, or passes its registration's timeout, is Unhealthy with its error"; the
        // dashboard "runs the health checks". (A check that ignores its token is not abandoned at its timeout: the
        // framework only cancels the token. Shown once, with a 30 s check that held the dashboard 30 s; sdk.md says so.)
        using IHost host = Build(new() { ["MonitoringStream:ArrowStoreEnabled"] = "false" }, s => s.AddHealthChecks()
            .AddCheck("throws", () => throw new InvalidOperationException("database gone"))
            .AddAsyncCheck("hangs", async ct =>
            {
                await Task.Delay(Timeout.Infinite, ct);
                return HealthCheckResult.Healthy();
            }, timeout: TimeSpan.FromMilliseconds(200))
            .AddCheck("degraded", () => HealthCheckResult.Degraded("slow")));
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        DashboardDataService dashboard = host.Services.GetRequiredService<DashboardDataService>();

        var stopwatch = Stopwatch.StartNew();
        DashboardData data = await dashboard.GetAsync(TimeSpan.FromMinutes(5)).WaitAsync(TimeSpan.FromSeconds(60));
        TimeSpan took = stopwatch.Elapsed;
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));

        Assert.NotNull(data.Health);
        Assert.Equal("Unhealthy", data.Health.Status);
        Assert.Equal("Unhealthy", data.Health.Checks.Single(c => c.Name == "throws").Status);
        Assert.Contains("database gone", data.Health.Checks.Single(c => c.Name == "throws").Error ?? data.Health.Checks.Single(c => c.Name == "throws").Description, StringComparison.Ordinal);
        Assert.Equal("Unhealthy", data.Health.Checks.Single(c => c.Name == "hangs").Status);
        Assert.Equal("Degraded", data.Health.Checks.Single(c => c.Name == "degraded").Status);
        Assert.Equal("Healthy", data.Health.Checks.Single(c => c.Name == MonitoringStreamServiceCollectionExtensions.EngineHealthCheckName).Status);
        Assert.True(took < TimeSpan.FromSeconds(10), $"the dashboard waited {took} for a check with a 200 ms timeout");
    }

    private static readonly string[] s_stat = ["count", "min", "max", "mean", "median", "p90", "p95", "p99", "stdDevPopulation", "stdDevSample", "last"];

    private static void AssertKeys(JsonElement element, string where, params string[] keys)
    {
        Assert.Equal(JsonValueKind.Object, element.ValueKind);
        string[] actual = [.. element.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal)];
        Assert.True(actual.SequenceEqual(keys.Order(StringComparer.Ordinal)), $"{where}: documented [{string.Join(", ", keys.Order(StringComparer.Ordinal))}], serialised [{string.Join(", ", actual)}]");
    }

    private static void AssertStat(JsonElement element, string where, bool mayBeNull = true)
    {
        if (element.ValueKind == JsonValueKind.Null && mayBeNull)
        {
            return;
        }

        AssertKeys(element, where, s_stat);
        Assert.Equal(JsonValueKind.Number, element.GetProperty("count").ValueKind);
    }

    [Fact]
    public async Task DashboardJson_EveryDocumentedPropertyNameAndNothingElse_WithOneValueStatsNullStdDevSample()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 60_000);
        MetricHistogram http = engine.Collector.CreateHistogram(HttpRequestMetrics.DurationMetric, ["method", "route", "status_code", "status_class"]);
        Assert.Equal(RejectReason.None, http.RecordAt(T0 + 1_000, 0.05, "GET", "/orders/{id}", "200", "2xx"));
        Assert.Equal(RejectReason.None, http.RecordAt(T0 + 1_000, 0.07, "GET", "/orders/{id}", "404", "4xx"));
        var documents = new DocumentMetrics(engine.Collector);
        documents.Record("invoice", "ok", TimeSpan.FromMilliseconds(120), 2_048);
        engine.Collector.CreateGauge("system_disk_usage_percent", ["mount"]).SetAt(T0 + 1_000, 42, "/");
        using var healthProvider = new ServiceCollection().AddLogging().AddHealthChecks().AddCheck("ok", () => HealthCheckResult.Healthy("fine")).Services.BuildServiceProvider();
        engine.Time.Advance(TimeSpan.FromSeconds(30));
        await engine.StopAsync();
        var dashboard = new DashboardDataService(engine.Queries, engine.Pipeline, healthProvider.GetRequiredService<HealthCheckService>(), time: engine.Time);

        DashboardData data = await dashboard.GetAsync(TimeSpan.FromMinutes(10)).WaitAsync(TimeSpan.FromSeconds(20));
        using JsonDocument json = JsonDocument.Parse(JsonSerializer.Serialize(data, DashboardJsonContext.Default.DashboardData));
        JsonElement root = json.RootElement;

        AssertKeys(root, "root", "generatedAt", "windowSeconds", "from", "to", "health", "system", "requests", "documents", "engine");
        Assert.Equal(600, root.GetProperty("windowSeconds").GetDouble());
        Assert.True(DateTimeOffset.TryParse(root.GetProperty("from").GetString(), System.Globalization.CultureInfo.InvariantCulture, out _));
        AssertKeys(root.GetProperty("health"), "health", "status", "checks");
        AssertKeys(root.GetProperty("health").GetProperty("checks")[0], "health.checks[]", "name", "status", "description", "error", "durationMs");
        JsonElement system = root.GetProperty("system");
        AssertKeys(system, "system", "cpuPercent", "processCpuPercent", "memoryUsedPercent", "memoryUsedBytes", "processWorkingSetBytes", "processGcHeapBytes", "disks");
        AssertKeys(system.GetProperty("disks")[0], "system.disks[]", "mount", "usedPercent");
        AssertStat(system.GetProperty("disks")[0].GetProperty("usedPercent"), "usedPercent", mayBeNull: false);
        Assert.Equal(JsonValueKind.Null, system.GetProperty("cpuPercent").ValueKind);   // never sampled: null
        JsonElement requests = root.GetProperty("requests");
        AssertKeys(requests, "requests", "count", "ratePerSecond", "latencySeconds", "byStatusCode", "routes");
        Assert.Equal(2, requests.GetProperty("count").GetInt64());
        Assert.Equal(1, requests.GetProperty("byStatusCode").GetProperty("404").GetInt64());
        AssertStat(requests.GetProperty("latencySeconds"), "requests.latencySeconds", mayBeNull: false);
        AssertKeys(requests.GetProperty("routes")[0], "requests.routes[]", "method", "route", "count", "latencySeconds");
        JsonElement docs = root.GetProperty("documents");
        AssertKeys(docs, "documents", "count", "durationSeconds", "byTypeAndStatus");
        JsonElement byType = docs.GetProperty("byTypeAndStatus")[0];
        AssertKeys(byType, "documents.byTypeAndStatus[]", "type", "status", "count", "durationSeconds", "sizeBytes");
        AssertStat(byType.GetProperty("sizeBytes"), "sizeBytes", mayBeNull: false);
        Assert.Equal(JsonValueKind.Null, byType.GetProperty("sizeBytes").GetProperty("stdDevSample").ValueKind);   // one value: undefined
        JsonElement engineJson = root.GetProperty("engine");
        AssertKeys(engineJson, "engine", "offered", "accepted", "rejected", "dropped", "late", "windowsEmitted", "seriesActive",
            "acceptedPerSecond", "droppedInWindow", "lateInWindow", "sinks");
        AssertKeys(engineJson.GetProperty("sinks")[0], "engine.sinks[]", "name", "state", "queueDepth", "batchesWritten", "batchesLost", "errors", "lastError");
        Assert.Contains(engineJson.GetProperty("sinks")[0].GetProperty("state").GetString(), (string[])["Ok", "Retrying", "Stalled", "Dropping"]);
    }

    [Fact]
    public async Task Dashboard_EmptyEngineAndDataOlderThanTheWindow_NoExceptionEmptySectionsNullFigures()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0);
        MetricHistogram http = engine.Collector.CreateHistogram(HttpRequestMetrics.DurationMetric, ["method", "route", "status_code", "status_class"]);
        var dashboard = new DashboardDataService(engine.Queries, engine.Pipeline, time: engine.Time);

        DashboardData empty = await dashboard.GetAsync().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Null(empty.Health);                        // "null without health checks"
        Assert.Equal(0, empty.Requests.Count);
        Assert.Empty(empty.Requests.Routes);
        Assert.Null(empty.Requests.LatencySeconds);
        Assert.Null(empty.System.CpuPercent);

        // Requests 30 minutes ago, a 1-minute window now: the routes are known in memory but have nothing in the window.
        Assert.Equal(RejectReason.None, http.RecordAt(T0 + 1_000, 0.05, "GET", "/a", "200", "2xx"));
        engine.Time.Advance(TimeSpan.FromMinutes(30));
        await engine.StopAsync();
        DashboardData later = await dashboard.GetAsync(TimeSpan.FromMinutes(1)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(0, later.Requests.Count);
        Assert.Empty(later.Requests.Routes);
        Assert.Empty(later.Requests.ByStatusCode);
        DashboardData wide = await dashboard.GetAsync(TimeSpan.FromHours(1)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(1, wide.Requests.Count);
        JsonSerializer.Serialize(later, DashboardJsonContext.Default.DashboardData);
    }

    [Fact]
    public async Task Dashboard_WindowAtItsExtremes_ClearErrorForNonPositiveAndAnswersForHuge()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0);
        var dashboard = new DashboardDataService(engine.Queries, engine.Pipeline, time: engine.Time);

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => dashboard.GetAsync(TimeSpan.Zero));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => dashboard.GetAsync(TimeSpan.FromSeconds(-1)));
        DashboardData huge = await dashboard.GetAsync(TimeSpan.MaxValue).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(DateTimeOffset.MinValue, huge.From);
        Assert.Equal((huge.To - huge.From).TotalSeconds, huge.WindowSeconds);
        DashboardData years = await dashboard.GetAsync(TimeSpan.FromMinutes(int.MaxValue)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(years.From < years.To);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("abc")]
    [InlineData("2147483647")]
    [InlineData("99999999999")]
    [InlineData("1.5")]
    public async Task DashboardEndpoint_HostileMinutes_NeverAServerError(string minutes)
    {
        // sdk.md: "?minutes=N for another window". Whatever a client sends, the endpoint answers 200 (the default or its
        // window) or 400, never 500.
        WebApplicationBuilder builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddMonitoringStream(o =>
        {
            o.SystemMetricsEnabled = false;
            o.ArrowStoreEnabled = false;
            o.Pipeline.ShardCount = 1;
        });
        await using WebApplication app = builder.Build();
        app.MapMonitoringStreamDashboard("/monitoring/dashboard");
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20));
        try
        {
            using var client = new HttpClient { BaseAddress = new Uri(app.Urls.First()), Timeout = TimeSpan.FromSeconds(20) };
            using HttpResponseMessage response = await client.GetAsync(new Uri("/monitoring/dashboard?minutes=" + minutes, UriKind.Relative));
            Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.BadRequest, $"minutes={minutes}: {(int)response.StatusCode}");
            if (response.StatusCode == HttpStatusCode.OK)
            {
                using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                Assert.True(json.RootElement.GetProperty("windowSeconds").GetDouble() > 0);
            }
        }
        finally
        {
            await app.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));
        }
    }
}
