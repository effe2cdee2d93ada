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
