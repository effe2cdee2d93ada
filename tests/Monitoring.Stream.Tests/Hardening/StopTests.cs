using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Stopping: every caller of <see cref="MetricsPipeline.StopAsync"/> returns only once the stop has finished.</summary>
public class StopTests
{
    [Fact]
    public async Task StopAsync_TwoConcurrentCalls_BothCompleteOnlyAfterTheStopFinished()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slow = new ProbeSink("slow", call => new ValueTask(gate.Task.WaitAsync(call.Token)));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [slow]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 3);
        }

        await slow.NextCallAsync().Within("the slow sink's first write");
        Task first = pipeline.StopAsync();
        Task second = pipeline.StopAsync();
        Task third = Task.Run(() => pipeline.StopAsync());

        // Neither may return while the sink still holds windows. (A negative check needs some wait; it can only miss, never flake.)
        Task early = await Task.WhenAny(first, second, third, Task.Delay(300));
        Assert.False(early == first || early == second || early == third, "a StopAsync returned while a sink still held windows");
        Assert.Equal(PipelineState.Stopping, pipeline.State);

        gate.SetResult();
        await second.Within("the second stop");
        // The moment the second call returns, the stop is over: every window written, the sink completed.
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(PipelineState.Stopped, m.State);
        Assert.Equal(3, m.Sinks[0].BatchesWritten);
        Assert.True(slow.Completed, "the sink was not completed when a StopAsync returned");
        Identities.AssertStopped(m);
        await first.Within("the first stop");
        await third.Within("the third stop");
    }

    [Fact]
    public async Task StopAsync_WhileItRuns_EveryWriterRefusesLaterWritesAndItsBufferedPointsAreAggregated()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slow = new ProbeSink("slow", call => new ValueTask(gate.Task.WaitAsync(call.Token)));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [slow]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter first = pipeline.CreateWriter("first"))
        {
            Assert.Equal(9, Scenario.WriteWindows(first, id, 0, 3));
        }

        await slow.NextCallAsync().Within("the slow sink's first write");
        using PointWriter own = pipeline.CreateWriter("own");
        using SharedPointWriter shared = pipeline.CreateSharedWriter("shared", BackpressureMode.Wait);
        // At the clock: in a window no watermark can have passed.
        long ts = Scenario.T0 + 100_000;
        Assert.Equal(RejectReason.None, own.Write(id, 2.0, ts));
        Assert.Equal(RejectReason.None, shared.Write(id, 3.0, ts));

        // The stop closes the writers as it begins (their fast path does not read the pipeline's state):
        // while it still waits for the sink, every write is refused, from an existing thread's writer or a new one.
        Task stop = pipeline.StopAsync();
        Assert.Equal(PipelineState.Stopping, pipeline.State);
        Assert.Equal(RejectReason.WriterClosed, own.Write(id, 4.0, ts));
        Assert.Equal(RejectReason.WriterClosed, shared.Write(id, 4.0, ts));
        Assert.Equal(RejectReason.WriterClosed, await Task.Run(() => shared.Write(id, 4.0, ts)).Within("a new thread's write"));
        using PointWriter created = pipeline.CreateWriter("created-while-stopping");
        Assert.Equal(RejectReason.WriterClosed, created.Write(id, 4.0, ts));
        Assert.False(stop.IsCompleted, "the stop ended while the sink still held a window");

        gate.SetResult();
        await stop.Within("the stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(4, m.RejectedByReason[RejectReason.WriterClosed]);
        Assert.Equal(0, m.Pending);
        // The two points buffered before the stop reached a window beside the first writer's nine: the stop drained the writers.
        Assert.Equal(15, m.Offered);
        Assert.Equal(11, m.Accepted);
        Assert.Equal(11, m.EmittedPoints);
    }

    [Fact]
    public async Task StopAsync_BeforeStart_StoppedAndWritesRefused()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var sink = new ProbeSink("s");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        await pipeline.StopAsync().Within("stop before start");
        await pipeline.StopAsync().Within("second stop");
        Assert.Equal(PipelineState.Stopped, pipeline.State);
        Assert.Throws<InvalidOperationException>(pipeline.Start);
        using PointWriter writer = pipeline.CreateWriter("w");
        Assert.Equal(RejectReason.WriterClosed, writer.Write(id, 1, Scenario.T0));
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(1, m.RejectedByReason[RejectReason.WriterClosed]);
        Assert.Equal(0, m.Pending);
    }

    [Fact]
    public async Task StopAsync_SecondCallWithSignal_ForcesTheStopForEveryCaller()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var never = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = new ProbeSink("stuck", call => new ValueTask(never.Task.WaitAsync(call.Token)));
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(stuck)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 2);
        }

        await stuck.NextCallAsync().Within("the stuck sink's first write");
        Task graceful = pipeline.StopAsync();
        using var signal = new CancellationTokenSource();
        Task forced = pipeline.StopAsync(signal.Token);
        signal.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => forced.Within("the forced stop"));
        Exception? e = await Record.ExceptionAsync(() => graceful.Within("the graceful stop, overtaken by the second signal"));
        // The overtaken caller learns the true cause, the signal; no shutdown timeout passed on the fake clock.
        Assert.IsType<OperationCanceledException>(e, exactMatch: false);
        await Signals.Until(() => pipeline.GetMetrics() is { WindowsEmitted: 2 } m && m.Sinks[0].BatchesAbandoned == 2, "two windows abandoned");
        Identities.AssertStopped(pipeline.GetMetrics());
    }
}
