using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 7 (black box, docs/event-time.md "Stopping"): a write refused as <see cref="RejectReason.WriterClosed"/> because
/// the stop had begun must be the writer's last accepted answer. Found: a write on the slow path between the stop setting
/// its state and closing that writer's bounds was told WriterClosed, and the same thread's next writes were accepted
/// again (about 10 of 20 rounds).
/// </summary>
public class StopRaceProbe7BlackBoxTests
{
    [Fact]
    public async Task Write_RefusedAsClosedWhileTheStopBegins_EveryLaterWriteOfThatThreadRefusedToo()
    {
        int rounds = 0;
        var failures = new List<string>();
        for (int round = 0; round < 20; round++)
        {
            FakeTimeProvider time = Scenario.Clock(Scenario.T0);
            MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 2, windowMs: 1000, latenessMs: 0, idleMs: 60_000);
            var sink = new CollectingSink();
            await using var pipeline = new MetricsPipeline(options, [sink]);
            pipeline.Start();
            PointWriter writer = pipeline.CreateWriter("closing", BackpressureMode.DropNewest);
            Label[] labels = [new("a", "b")];
            using var started = new ManualResetEventSlim();
            var after = new List<RejectReason>();
            long told = 0;
            var thread = new Thread(() =>
            {
                long i = 0;
                while (true)
                {
                    // Every third write is out of range: the slow path, which reads the pipeline's state.
                    RejectReason r = writer.Write("p7_closing", labels, i % 3 == 0 ? double.MaxValue : 1, Scenario.T0);
                    told++;
                    if (++i == 1000)
                    {
                        started.Set();
                    }

                    if (r == RejectReason.WriterClosed)
                    {
                        break;
                    }
                }

                for (int k = 0; k < 20; k++)
                {
                    after.Add(writer.Write("p7_closing", labels, 1, Scenario.T0));
                    told++;
                }
            })
            { IsBackground = true };
            thread.Start();
            Assert.True(started.Wait(Signals.Bound), "the writer did not start");
            await pipeline.StopAsync().Within("the stop");
            Assert.True(thread.Join(Signals.Bound), "the writer thread did not end");
            rounds++;
            if (after.Any(r => r != RejectReason.WriterClosed))
            {
                failures.Add($"round {round}: after WriterClosed: {string.Join(",", after.Distinct())}");
            }

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(told, m.Offered);
            Assert.Equal(m.Accepted, sink.Rows.Sum(r => r.Count) + m.Late);
        }

        Assert.Equal(20, rounds);
        Assert.Empty(failures);
    }

    /// <summary>
    /// README.md: cancelling the token passed to StopAsync is the second stop signal; "a concurrent or later StopAsync ...
    /// (its token is a second signal too while the stop runs)". Found: with a writer holding buffered points and its
    /// shard's queue full behind a sink that holds its window, StopAsync() did not return a task: the graceful flush of
    /// the writers ran on the caller's thread (under the stop's lock) and waited there for room, so a second
    /// StopAsync(token) could not even register its signal.
    /// </summary>
    [Fact]
    public async Task StopAsync_WriterBufferedBehindAFullShardAndAHeldSink_ReturnsATaskAtOnceAndASecondSignalForcesIt()
    {
        FakeTimeProvider time = Scenario.Clock(Scenario.T0 + 100_000);
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sink = new ProbeSink("held", _ => new ValueTask(held.Task));
        MetricsPipelineOptions options = Scenario.Options(time);
        options.BatchSize = 4;
        options.ShardQueueBatches = 2;
        options.ShutdownTimeout = TimeSpan.FromDays(1);
        var pipeline = new MetricsPipeline(options, [new Monitoring.Stream.Sinks.SinkRegistration(sink, new Monitoring.Stream.Sinks.SinkOptions { QueueCapacity = 1, AttemptTimeout = Timeout.InfiniteTimeSpan })]);
        try
        {
            SeriesId id = pipeline.Registry.GetOrAdd("p7_held");
            pipeline.Start();
            // Windows 0..3 close one another: the sink holds window 0, its queue window 1, the shard waits with window 2.
            PointWriter closer = pipeline.CreateWriter("closer", BackpressureMode.Wait);
            for (int w = 0; w < 4; w++)
            {
                Assert.Equal(RejectReason.None, closer.Write(id, w, Scenario.T0 + (w * 1000L) + 1));
                closer.Flush();
            }

            await Signals.Until(() => sink.Calls == 1 && pipeline.GetMetrics().Sinks[0].QueueDepth == 1, "the sink holds a window and its queue another")
                .ContinueWith(
                    t =>
                    {
                        PipelineMetrics d = pipeline.GetMetrics();
                        Assert.True(t.IsCompletedSuccessfully, $"sink calls {sink.Calls}, sink queue {d.Sinks[0].QueueDepth}, windows {d.WindowsEmitted}, watermark {d.Watermarks[0]}, accepted {d.Accepted}, open {d.OpenWindowPoints}, queued {d.Queued}");
                    },
                    TaskScheduler.Default);
            PointWriter filler = pipeline.CreateWriter("filler", BackpressureMode.DropNewest); // created once windows closed
            await Signals.Until(
                () =>
                {
                    for (int i = 0; i < 4; i++)
                    {
                        filler.Write(id, 1, Scenario.T0 + 3_500);
                    }

                    filler.Flush();
                    return pipeline.GetMetrics().DroppedByReason[DropReason.QueueFull] > 0;
                },
                "the shard's queue is full");
            PointWriter buffered = pipeline.CreateWriter("buffered", BackpressureMode.Wait); // created late: holds nothing back before
            Assert.Equal(RejectReason.None, buffered.Write(id, 7, Scenario.T0 + 3_600)); // stays in the writer's buffer

            Task<Task> call = Task.Factory.StartNew(() => pipeline.StopAsync(), CancellationToken.None, TaskCreationOptions.None, TaskScheduler.Default);
            Task stop = await call.Within("StopAsync returning its task while the sink holds its window");
            Assert.False(stop.IsCompleted, "the stop finished while the sink held a window (the test proves nothing then)");
            using var signal = new CancellationTokenSource();
            Task second = await Task.Factory.StartNew(() => pipeline.StopAsync(signal.Token), CancellationToken.None, TaskCreationOptions.None, TaskScheduler.Default).Within("a second StopAsync returning its task");
            await signal.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second.Within("the second signal forcing the stop"));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stop.Within("the first caller learning the stop was forced"));
            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertIdentities(m);
            Assert.Equal(PipelineState.Stopped, m.State);
            Assert.Equal(0, m.Pending);
            SinkMetrics s = Assert.Single(m.Sinks);
            Assert.Equal(m.WindowsEmitted, s.BatchesWritten + s.BatchesFailed + s.BatchesDropped + s.BatchesAbandoned);
        }
        finally
        {
            held.TrySetResult();
            await pipeline.DisposeAsync();
        }
    }
}
