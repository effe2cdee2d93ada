using Microsoft.Extensions.Diagnostics.HealthChecks;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Tests.Support;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Hosting.Tests.Health;

public class EngineHealthCheckTests
{
    private const long T0 = EngineFixture.T0;

    private static async Task<HealthCheckResult> CheckAsync(EngineHealthCheck check) =>
        await check.CheckHealthAsync(new HealthCheckContext());

    [Fact]
    public async Task CheckHealth_StalledSink_DegradedThenUnhealthyThenHealthyOnRecovery()
    {
        var blocking = new BlockingSink();
        await using var engine = new EngineFixture(nowUnixMs: T0 + 60_000, extraSinks: [blocking], sinkOptions: new SinkOptions { QueueCapacity = 4 });
        var check = new EngineHealthCheck(engine.Pipeline, time: engine.Time);
        BoundHistogram handle = engine.Collector.CreateHistogram("latency", ["route"]).Bind("/a");

        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(check)).Status);
        handle.Record(1, T0);
        handle.Record(1, T0 + 20_000);   // moves the watermark past the first window, which closes
        engine.Collector.Flush();
        await blocking.FirstWriteStarted.WaitAsync(TimeSpan.FromSeconds(10));
        // The other sink must be done with the window before the clock moves, or it too would look stalled.
        await Eventually.TrueAsync(() => engine.Pipeline.GetMetrics().Sinks.Single(s => s.Name == engine.Index.Name).BatchesWritten == 1, "the index writes the window");

        Assert.Equal(HealthStatus.Healthy, (await CheckAsync(check)).Status);
        engine.Time.Advance(TimeSpan.FromSeconds(31));
        HealthCheckResult degraded = await CheckAsync(check);
        engine.Time.Advance(TimeSpan.FromSeconds(90));
        HealthCheckResult unhealthy = await CheckAsync(check);
        blocking.Release();
        await Eventually.TrueAsync(() =>
        {
            var m = engine.Pipeline.GetMetrics();
            if (m.Sinks.All(s => s.BatchesWritten == m.WindowsEmitted))
            {
                return true;
            }

            // The clock jumps above gave the held attempt up (its timeout), and its retry waits out a backoff on this
            // fake clock: when the runner armed that backoff after the last jump, only a moving clock lets it fire (a
            // CI run waited here until the test timed out).
            engine.Time.Advance(TimeSpan.FromSeconds(1));
            return false;
        }, "every sink writes every emitted window");
        // Recovery is what the check reports once the sink has caught up. A CI run (session 9) saw it still
        // "retrying, last error: TimeoutException" right after every window was written; the cause is not
        // established (10 local runs of the class passed). The check is asked again, the clock moving a second a
        // time, for at most about 10 s of real time: a sink that stayed retrying still fails the test.
        HealthCheckResult recovered = await CheckAsync(check);
        var recovering = System.Diagnostics.Stopwatch.StartNew();
        while (recovered.Status != HealthStatus.Healthy && recovering.Elapsed < TimeSpan.FromSeconds(10))
        {
            engine.Time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10);
            recovered = await CheckAsync(check);
        }

        Assert.Equal(HealthStatus.Degraded, degraded.Status);
        Assert.Contains("sink blocking stalled", degraded.Description, StringComparison.Ordinal);
        Assert.Equal(HealthStatus.Unhealthy, unhealthy.Status);
        Assert.Equal("Stalled", unhealthy.Data["sink.blocking"]);
        Assert.True(recovered.Status == HealthStatus.Healthy, recovered.Description);
        Assert.Equal(SinkState.Ok, check.LastSinkStates.Single(s => s.Name == "blocking").State);
    }

    [Fact]
    public async Task CheckHealth_LatePoints_DegradedByLateRateThenHealthyAgain()
    {
        await using var engine = new EngineFixture(nowUnixMs: T0 + 120_000);
        var check = new EngineHealthCheck(engine.Pipeline, new EngineHealthOptions { LateRateDegraded = 0.05, LateRateUnhealthy = 0.5 }, engine.Time);
        BoundHistogram handle = engine.Collector.CreateHistogram("latency", ["route"]).Bind("/a");
        for (int i = 0; i < 90; i++)
        {
            handle.Record(1, T0 + 60_000 + i);
        }

        // The shard moves its watermark once per batch: the late points come in a batch of their own.
        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();
        for (int i = 0; i < 10; i++)
        {
            handle.Record(1, T0);   // a window long closed by the watermark: late
        }

        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();
        HealthCheckResult late = await CheckAsync(check);
        handle.Record(1, T0 + 60_500);
        engine.Collector.Flush();
        await engine.Pipeline.DrainAsync();
        HealthCheckResult after = await CheckAsync(check);

        Assert.Equal(HealthStatus.Degraded, late.Status);
        Assert.Equal(0.1, (double)late.Data["late_rate"], 1e-9);
        Assert.Equal(HealthStatus.Healthy, after.Status);
    }

    [Fact]
    public void Constructor_ThresholdsOutOfOrder_ThrowsNamingTheSetting()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new EngineHealthOptions { DropRateDegraded = 0.5, DropRateUnhealthy = 0.1 }.Validate());
        Assert.Contains("DropRateDegraded", e.Message, StringComparison.Ordinal);
    }
}
