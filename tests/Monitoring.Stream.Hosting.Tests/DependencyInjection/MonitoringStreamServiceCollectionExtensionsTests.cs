using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Tests.DependencyInjection;

public class MonitoringStreamServiceCollectionExtensionsTests
{
    private static IHost Build(Dictionary<string, string?> settings, Action<IServiceCollection>? more = null, TimeSpan? shutdownTimeout = null)
    {
        HostApplicationBuilder builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(30));
        builder.Services.AddMonitoringStream(o => o.SystemMetricsEnabled = false);
        more?.Invoke(builder.Services);
        return builder.Build();
    }

    [Fact]
    public async Task AddMonitoringStream_BoundFromConfiguration_RunsAndStopsGracefully()
    {
        using var dir = new TempDirectory();
        using IHost host = Build(new()
        {
            ["MonitoringStream:Pipeline:ShardCount"] = "2",
            ["MonitoringStream:Pipeline:WindowSize"] = "00:00:05",
            ["MonitoringStream:ArrowStore:Directory"] = dir.Path,
            ["MonitoringStream:Source"] = "checkout",
        });
        await host.StartAsync();
        MetricsPipeline pipeline = host.Services.GetRequiredService<MetricsPipeline>();
        MetricsCollector collector = host.Services.GetRequiredService<MetricsCollector>();
        collector.CreateCounter("orders_total", ["region"]).Add(3, "eu");
        HealthReport health = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        await host.StopAsync();

        Assert.Equal(2, pipeline.Options.ShardCount);
        Assert.Equal(TimeSpan.FromSeconds(5), pipeline.Options.WindowSize);
        Assert.Equal(HealthStatus.Healthy, health.Entries[MonitoringStreamServiceCollectionExtensions.EngineHealthCheckName].Status);
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal("checkout", Assert.Single(m.Sources, s => s.Source == "checkout").Source);
        Assert.Equal(m.Offered, m.EmittedPoints);
        Assert.NotEmpty(Directory.GetFiles(dir.Path, "*.arrow"));
        MetricStatistics? orders = host.Services.GetRequiredService<MetricStatisticsService>().GetMatching("orders_total", LabelSet.Empty, TimeSpan.FromHours(1));
        Assert.Equal(3, orders!.Sum);
    }

    [Fact]
    public async Task AddMonitoringStream_InvalidSettings_StartFailsNamingEachSetting()
    {
        using IHost host = Build(new()
        {
            ["MonitoringStream:Pipeline:ShardCount"] = "0",
            ["MonitoringStream:RecentWindows:Retention"] = "00:00:30",
            ["MonitoringStream:Health:DropRateDegraded"] = "0.9",
        });

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("MonitoringStream:Pipeline:ShardCount = 0: must be between 1 and 1024.", e.Message, StringComparison.Ordinal);
        Assert.Contains("MonitoringStream:RecentWindows:Retention = 00:00:30", e.Message, StringComparison.Ordinal);
        Assert.Contains("DropRateDegraded", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddMonitoringStream_HealthCheckNamedLikeTheAggregate_StartFailsNamingIt()
    {
        // Its status and the aggregate's would be one series, monitoring_health_status{check="overall"}.
        using IHost host = Build([], s => s.AddHealthChecks().AddCheck("overall", () => HealthCheckResult.Healthy()));

        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("registered under the name 'overall'", e.Message, StringComparison.Ordinal);
        Assert.Contains("register it under another name", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddMonitoringStream_HealthCheckNamedOverallInOtherCase_StartsAndBothStatusesAreRecorded()
    {
        // Label values are case-sensitive: "Overall" is a series of its own.
        using IHost host = Build([], s => s.AddHealthChecks().AddCheck("Overall", () => HealthCheckResult.Degraded("mine")));
        await host.StartAsync();
        try
        {
            HealthReport report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
            Assert.Equal(HealthStatus.Degraded, report.Entries["Overall"].Status);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public async Task StopAsync_SinkNeverFinishes_StopsWithinTheHostShutdownTimeout()
    {
        var blocking = new BlockingSink();
        using IHost host = Build(new() { ["MonitoringStream:ArrowStoreEnabled"] = "false" },
            s => s.AddSingleton<IWindowSink>(blocking), shutdownTimeout: TimeSpan.FromSeconds(1));
        await host.StartAsync();
        host.Services.GetRequiredService<MetricsCollector>().CreateHistogram("latency", ["route"]).Record(1, "/a");

        var stopwatch = Stopwatch.StartNew();
        await host.StopAsync().WaitAsync(TimeSpan.FromSeconds(20));

        Assert.InRange(stopwatch.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        SinkMetrics sink = host.Services.GetRequiredService<MetricsPipeline>().GetMetrics().Sinks.Single(s => s.Name == "blocking");
        Assert.Equal(0, sink.BatchesWritten);
        Assert.True(sink.BatchesAbandoned >= 1, "the window the stalled sink never wrote is counted as abandoned");
    }
}
