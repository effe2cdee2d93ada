using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Tests.Dashboard;

/// <summary>The dashboard's sink state is the engine health check's verdict, so the page and /health agree.</summary>
public class DashboardSinkStateTests
{
    private const long T0 = EngineFixture.T0;

    [Fact]
    public async Task GetAsync_SinkWithPendingWindowsAndNoProgress_ShowsStalledLikeTheHealthCheck()
    {
        var blocking = new BlockingSink();
        await using var engine = new EngineFixture(nowUnixMs: T0 + 60_000, extraSinks: [blocking], sinkOptions: new SinkOptions { QueueCapacity = 4 });
        var check = new EngineHealthCheck(engine.Pipeline, time: engine.Time);
        var services = new ServiceCollection().AddLogging();
        services.AddHealthChecks().Add(new HealthCheckRegistration("engine", check, failureStatus: null, tags: null));
        HealthCheckService health = services.BuildServiceProvider().GetRequiredService<HealthCheckService>();
        var dashboard = new DashboardDataService(engine.Queries, engine.Pipeline, health, time: engine.Time, engineHealth: check);
        BoundHistogram handle = engine.Collector.CreateHistogram("latency", ["route"]).Bind("/a");

        handle.Record(1, T0);
        handle.Record(1, T0 + 20_000);
        engine.Collector.Flush();
        await blocking.FirstWriteStarted.WaitAsync(TimeSpan.FromSeconds(10));
        await Eventually.TrueAsync(() => engine.Pipeline.GetMetrics().Sinks.Single(s => s.Name == engine.Index.Name).BatchesWritten == 1, "the index writes the window");
        Assert.Equal("Ok", (await dashboard.GetAsync()).Engine.Sinks.Single(s => s.Name == "blocking").State);

        // The sink's write never returns: its queue is not full, so the pipeline alone never says Stalled.
        engine.Time.Advance(TimeSpan.FromSeconds(31));
        DashboardData stalled = await dashboard.GetAsync();
        Assert.NotEqual(SinkState.Stalled, engine.Pipeline.GetMetrics().Sinks.Single(s => s.Name == "blocking").State);
        Assert.Equal("Degraded", stalled.Health!.Status);
        Assert.Equal("Stalled", stalled.Engine.Sinks.Single(s => s.Name == "blocking").State);

        blocking.Release();
        await Eventually.TrueAsync(
            () =>
            {
                // A timed-out attempt waits for its retry on the engine's (fake) clock.
                engine.Time.Advance(TimeSpan.FromMilliseconds(200));
                return engine.Pipeline.GetMetrics().Sinks.All(s => s.QueueDepth == 0 && s.BatchesWritten + s.BatchesFailed == engine.Pipeline.GetMetrics().WindowsEmitted);
            },
            "the sink catches up");
        Assert.Equal("Ok", (await dashboard.GetAsync()).Engine.Sinks.Single(s => s.Name == "blocking").State);
    }
}
