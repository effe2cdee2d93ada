using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>A stuck, slow, deaf or broken sink costs only itself (within its policy), and every window lands in one of its counters.</summary>
public class SinkIsolationTests
{
    /// <summary>Steps the fake clock by 100 ms until <paramref name="signal"/> completes; returns the fake milliseconds it took.</summary>
    private static async Task<long> AdvanceUntil(Microsoft.Extensions.Time.Testing.FakeTimeProvider time, Task signal, string what)
    {
        long advanced = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!signal.IsCompleted)
        {
            Assert.True(clock.Elapsed < Signals.Bound, $"{what} did not happen within {Signals.Bound.TotalSeconds} s");
            time.Advance(TimeSpan.FromMilliseconds(100));
            advanced += 100;
            await Task.WhenAny(signal, Task.Delay(5));
        }

        await signal;
        return advanced;
    }

    [Fact]
    public async Task StuckSink_DropOldest_IngestionAndOtherSinkGoOn_DropsCounted()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(gate.Task.WaitAsync(call.Token)));
        var healthy = new ProbeSink("healthy");
        SinkRegistration[] sinks =
        [
            new(stuck, new SinkOptions { QueueCapacity = 2, QueuePolicy = SinkQueuePolicy.DropOldest }),
            new(healthy, new SinkOptions { QueueCapacity = 2, QueuePolicy = SinkQueuePolicy.Block }),
        ];
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), sinks);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("w", BackpressureMode.Wait);

        // Window 0 closes (window 1's data arrives) and the stuck sink takes it in hand; then 20 more close.
        Scenario.WriteWindows(writer, id, 0, 2);
        ProbeSink.Call first = await stuck.NextCallAsync().Within("the stuck sink's first write");
        Assert.Equal(Scenario.T0, first.Batch.WindowStartUnixMs);
        Scenario.WriteWindows(writer, id, 2, 20);
        await pipeline.DrainAsync().Within("drain past a stuck drop-oldest sink");
        await Signals.Until(() => healthy.Calls >= 21, "the healthy sink receiving all 21 closed windows");

        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertSettled(m);
        Assert.Equal(21, m.WindowsEmitted);
        SinkMetrics s = m.Sinks.Single(x => x.Name == "stuck");
        Assert.Equal(SinkState.Dropping, s.State);
        Assert.Equal(SinkQueuePolicy.DropOldest, s.QueuePolicy);
        Assert.Equal(2, s.QueueDepth);
        Assert.Equal(21 - 1 - 2, s.BatchesDropped);
        Assert.Equal((21 - 1 - 2) * 3, s.PointsDropped);
        Assert.Equal(1, stuck.Calls);

        // Released, it writes what it held and what was queued; the stop's last window then finds room.
        gate.SetResult();
        await Signals.Until(() => pipeline.GetMetrics().Sinks.Single(x => x.Name == "stuck").BatchesWritten == 3, "the stuck sink catching up");
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        s = m.Sinks.Single(x => x.Name == "stuck");
        Assert.Equal(22, m.WindowsEmitted);
        Assert.Equal(4, s.BatchesWritten);
        Assert.Equal(18, s.BatchesDropped);
        Assert.Equal(22, m.Sinks.Single(x => x.Name == "healthy").BatchesWritten);
        Assert.Equal(22 * 3, healthy.PointsRead);
    }

    [Fact]
    public async Task StuckSink_Block_StateStalled_ThenEverythingWritten()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(gate.Task.WaitAsync(call.Token)));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(stuck, new SinkOptions { QueueCapacity = 1 })]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("w", BackpressureMode.Wait);

        // One window in hand, one queued, the third makes the shard wait for room.
        Scenario.WriteWindows(writer, id, 0, 4);
        await stuck.NextCallAsync().Within("the stuck sink's first write");
        await Signals.Until(() => pipeline.GetMetrics().Sinks[0].State == SinkState.Stalled, "the sink showing Stalled");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertConsistent(m);
        Assert.Equal(1, m.Sinks[0].QueueDepth);
        Assert.Equal(0, m.Sinks[0].BatchesDropped);

        gate.SetResult();
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(4, m.WindowsEmitted);
        Assert.Equal(4, m.Sinks[0].BatchesWritten);
        Assert.Equal(SinkState.Ok, m.Sinks[0].State);
        Assert.Equal(12, stuck.PointsRead);
    }

    [Fact]
    public async Task DeafSink_ShortAttemptTimeout_WindowsFailedNeverUncounted_StopCompletes()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Ignores its token: waits on a task nothing completes until the test ends.
        var deaf = new ProbeSink("deaf", _ => new ValueTask(never.Task));
        var healthy = new ProbeSink("healthy");
        var deafOptions = new SinkOptions
        {
            QueueCapacity = 8,
            AttemptTimeout = TimeSpan.FromSeconds(2),
            MaxAttempts = 2,
            InitialBackoff = TimeSpan.Zero,
            MaxBackoff = TimeSpan.Zero,
        };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(deaf, deafOptions), new SinkRegistration(healthy)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("w");
        try
        {
            Scenario.WriteWindows(writer, id, 0, 4);
            writer.Dispose();
            await pipeline.DrainAsync().Within("drain");

            // Three windows closed by data; each gets two attempts, each attempt times out on the fake clock.
            for (int attempt = 1; attempt <= 6; attempt++)
            {
                ProbeSink.Call call = await deaf.NextCallAsync().Within($"attempt {attempt}");
                Assert.Equal(attempt, call.Index);
                time.Advance(TimeSpan.FromSeconds(2));
            }

            await Signals.Until(() => pipeline.GetMetrics().Sinks[0].BatchesFailed == 3, "three windows given up");
            SinkMetrics s = pipeline.GetMetrics().Sinks[0];
            Assert.Equal(6, s.Timeouts);
            Assert.Equal(6, s.Errors);
            Assert.Contains("TimeoutException", s.LastError);

            // The stop emits the last window: it times out twice as well, then the stop completes.
            Task stop = pipeline.StopAsync();
            for (int attempt = 7; attempt <= 8; attempt++)
            {
                await deaf.NextCallAsync().Within($"attempt {attempt}");
                time.Advance(TimeSpan.FromSeconds(2));
            }

            await stop.Within("a stop past a sink that ignores cancellation");
            PipelineMetrics m = pipeline.GetMetrics();
            Identities.AssertStopped(m);
            s = m.Sinks.Single(x => x.Name == "deaf");
            Assert.Equal(4, s.BatchesFailed);
            Assert.Equal(12, s.PointsFailed);
            Assert.Equal(0, s.BatchesWritten);
            Assert.Equal(8, s.Timeouts);
            Assert.Equal(4, m.Sinks.Single(x => x.Name == "healthy").BatchesWritten);
        }
        finally
        {
            never.TrySetResult();
        }
    }

    [Fact]
    public async Task DeafSink_ForcedStop_CompletesAndCountsAbandoned()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var deaf = new ProbeSink("deaf", _ => new ValueTask(never.Task));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(deaf, new SinkOptions { QueueCapacity = 8 })]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        try
        {
            using (PointWriter writer = pipeline.CreateWriter("w"))
            {
                Scenario.WriteWindows(writer, id, 0, 3);
            }

            await deaf.NextCallAsync().Within("the first write");
            using var secondSignal = new CancellationTokenSource();
            Task stop = pipeline.StopAsync(secondSignal.Token);
            secondSignal.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stop.Within("a forced stop past a deaf sink"));

            await Signals.Until(
                () => pipeline.GetMetrics() is { WindowsEmitted: 3, OpenWindowPoints: 0 } after && after.Sinks[0].BatchesAbandoned == 3,
                "three windows emitted and counted as abandoned");
            PipelineMetrics m = pipeline.GetMetrics();
            Identities.AssertStopped(m);
            Assert.Equal(3, m.WindowsEmitted);
            Assert.Equal(9, m.Sinks[0].PointsAbandoned);
        }
        finally
        {
            never.TrySetResult();
        }
    }

    [Fact]
    public async Task ThrowingSink_RetriedThenFailed_CountsExact()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var broken = new ProbeSink("broken", call => throw new IOException($"down (call {call.Index})"));
        var healthy = new ProbeSink("healthy");
        var options = new SinkOptions { MaxAttempts = 3, InitialBackoff = TimeSpan.Zero, MaxBackoff = TimeSpan.Zero };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(broken, options), new SinkRegistration(healthy)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 4, perWindow: 5);
        }

        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        SinkMetrics b = m.Sinks.Single(x => x.Name == "broken");
        Assert.Equal(4, m.WindowsEmitted);
        Assert.Equal(4, b.BatchesFailed);
        Assert.Equal(20, b.PointsFailed);
        Assert.Equal(0, b.BatchesWritten);
        Assert.Equal(12, b.Errors);
        Assert.Equal(12, broken.Calls);
        Assert.Equal(0, b.Timeouts);
        Assert.Contains("down (call 12)", b.LastError);
        Assert.Equal(SinkState.Ok, b.State);
        SinkMetrics h = m.Sinks.Single(x => x.Name == "healthy");
        Assert.Equal(4, h.BatchesWritten);
        Assert.Equal(20, healthy.PointsRead);
    }
    [Fact]
    public async Task FlakySink_StateRetryingDuringBackoff_ThenOkAndEverythingWritten()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var flaky = new ProbeSink("flaky", call => call.Index <= 2 ? throw new IOException("flaky") : ValueTask.CompletedTask);
        var options = new SinkOptions { MaxAttempts = 5, InitialBackoff = TimeSpan.FromSeconds(1), MaxBackoff = TimeSpan.FromSeconds(2) };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(flaky, options)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 2);
        }

        await flaky.NextCallAsync().Within("the first attempt");
        await Signals.Until(() => pipeline.GetMetrics().Sinks[0].State == SinkState.Retrying, "the sink showing Retrying during its backoff");
        // The backoff timer is created just after the state changes: step the clock until the retry comes.
        long waited = await AdvanceUntil(time, flaky.NextCallAsync(), "the second attempt");
        Assert.True(waited >= 1000, $"retried after {waited} ms of backoff, 1,000 ms configured");
        await Signals.Until(() => pipeline.GetMetrics().Sinks[0].Errors == 2, "the second failure counted");
        waited = await AdvanceUntil(time, flaky.NextCallAsync(), "the third attempt");
        Assert.True(waited >= 2000, $"retried after {waited} ms of backoff, 2,000 ms configured");
        // (The clock steps also closed window 1 by the tick: that one may be written already too.)
        await Signals.Until(() => pipeline.GetMetrics().Sinks[0].BatchesWritten >= 1, "the window written");
        Assert.Equal(SinkState.Ok, pipeline.GetMetrics().Sinks[0].State);

        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(2, m.Sinks[0].BatchesWritten);
        Assert.Equal(2, m.Sinks[0].Errors);
        Assert.Equal(0, m.Sinks[0].BatchesFailed);
    }
}
