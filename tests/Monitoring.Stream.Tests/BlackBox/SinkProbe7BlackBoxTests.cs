using System.Collections.Concurrent;
using Apache.Arrow;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 7: three misbehaving sinks on one pipeline at once, from README.md ("Sinks are independent: each has its own
/// queue ... Every window ends in exactly one of written, failed, dropped or abandoned for each sink. A sink that keeps
/// a batch after WriteAsync returns calls batch.Retain() and disposes what it gets"; cancelling StopAsync's token forces
/// the stop and counts what a sink did not get as abandoned): one that throws on every second call, one that keeps
/// every batch past WriteAsync through Retain, one that hangs ignoring its cancellation with a drop-oldest queue.
/// </summary>
public class SinkProbe7BlackBoxTests
{
    /// <summary>Keeps every batch it is handed through <see cref="WindowBatch.Retain"/>, reading them only later.</summary>
    private sealed class KeepingSink : IWindowSink
    {
        private readonly ConcurrentQueue<WindowBatch> _kept = new();

        public string Name => "keeper";

        public IReadOnlyList<WindowBatch> Kept => [.. _kept];

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            _kept.Enqueue(batch.Retain());
            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static long Points(RecordBatch batch)
    {
        var counts = (Int64Array)batch.Column("count");
        long points = 0;
        for (int r = 0; r < counts.Length; r++)
        {
            points += counts.GetValue(r)!.Value;
        }

        return points;
    }

    [Fact]
    public async Task ThreeMisbehavingSinksAtOnce_ForcedStop_EachSinksIdentityExactOthersUnaffectedKeptBatchesReadable()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var hung = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var flaky = new ProbeSink("flaky", call => call.Index % 2 == 0 ? throw new IOException($"call {call.Index} fails") : ValueTask.CompletedTask);
        var keeper = new KeepingSink();
        var deaf = new ProbeSink("deaf", _ => new ValueTask(hung.Task)); // ignores its token
        MetricsPipelineOptions options = Scenario.Options(time, shards: 2);
        var pipeline = new MetricsPipeline(options,
        [
            new SinkRegistration(flaky, new SinkOptions { MaxAttempts = 1, InitialBackoff = TimeSpan.Zero, MaxBackoff = TimeSpan.Zero }),
            new SinkRegistration(keeper),
            new SinkRegistration(deaf, new SinkOptions { QueueCapacity = 2, QueuePolicy = SinkQueuePolicy.DropOldest, AttemptTimeout = Timeout.InfiniteTimeSpan }),
        ]);
        try
        {
            SeriesId[] ids = [.. Enumerable.Range(0, 6).Select(k => pipeline.Registry.GetOrAdd("p7_sinks", [new Label("k", "k" + k)]))];
            pipeline.Start();
            long written = 0;
            using (PointWriter writer = pipeline.CreateWriter("w"))
            {
                for (int w = 0; w < 12; w++)
                {
                    foreach (SeriesId id in ids)
                    {
                        Assert.Equal(RejectReason.None, writer.Write(id, w + 0.5, Scenario.T0 + (w * 1000L) + 10));
                        written++;
                    }

                    writer.Flush();
                }
            }

            await pipeline.DrainAsync().Within("the drain");
            long emittedBeforeStop = pipeline.GetMetrics().WindowsEmitted;
            Assert.True(emittedBeforeStop >= 10, $"only {emittedBeforeStop} windows closed before the stop");
            await Signals.Until(
                () => pipeline.GetMetrics().Sinks is var s && s[0].BatchesWritten + s[0].BatchesFailed == emittedBeforeStop && s[1].BatchesWritten == emittedBeforeStop,
                "the flaky and the keeping sink dealt with every window while the deaf one hangs");
            SinkMetrics deafNow = pipeline.GetMetrics().Sinks[2];
            Assert.Equal(1, deaf.Calls);
            Assert.True(deafNow.BatchesDropped > 0, "the deaf sink's drop-oldest queue dropped nothing");

            // The stop emits the last windows; the flaky and keeping sinks take them, the deaf sink holds the stop.
            using var signal = new CancellationTokenSource();
            Task stop = pipeline.StopAsync(signal.Token);
            await Signals.Until(
                () => pipeline.GetMetrics() is { State: PipelineState.Stopping } m && m.Sinks[0].BatchesWritten + m.Sinks[0].BatchesFailed == m.WindowsEmitted && m.Sinks[1].BatchesWritten == m.WindowsEmitted && m.OpenWindowPoints == 0,
                "the other sinks took the stop's windows");
            Assert.False(stop.IsCompleted, "the stop ended while the deaf sink hung");
            await signal.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stop.Within("the forced stop"));

            PipelineMetrics after = pipeline.GetMetrics();
            Assert.Equal(PipelineState.Stopped, after.State);
            Assert.Equal(written, after.Offered);
            Assert.Equal(written, after.EmittedPoints);
            foreach (SinkMetrics s in after.Sinks)
            {
                Assert.Equal(0, s.QueueDepth);
                Assert.Equal(after.WindowsEmitted, s.BatchesWritten + s.BatchesFailed + s.BatchesDropped + s.BatchesAbandoned);
                Assert.Equal(after.EmittedPoints, s.PointsWritten + s.PointsFailed + s.PointsDropped + s.PointsAbandoned);
            }

            SinkMetrics flakyM = after.Sinks[0], keeperM = after.Sinks[1], deafM = after.Sinks[2];
            Assert.Equal(0, flakyM.BatchesAbandoned + flakyM.BatchesDropped + keeperM.BatchesAbandoned + keeperM.BatchesDropped + keeperM.BatchesFailed);
            Assert.Equal(flaky.Calls / 2, flakyM.BatchesFailed);
            Assert.Equal(flakyM.BatchesFailed, flakyM.Errors);
            Assert.Equal(flaky.Calls - (flaky.Calls / 2), flakyM.BatchesWritten);
            Assert.Equal(0, deafM.BatchesWritten + deafM.BatchesFailed);
            Assert.True(deafM.BatchesAbandoned >= 1, "the window the deaf sink was in is not counted abandoned");

            // The kept batches outlive the stop and the pipeline's disposal, with their values.
            await pipeline.DisposeAsync();
            IReadOnlyList<WindowBatch> kept = keeper.Kept;
            Assert.Equal(after.WindowsEmitted, kept.Count);
            Assert.Equal(written, kept.Sum(b => Points(b.RecordBatch)));
            Assert.Equal(written, kept.Sum(b => b.Points));
            Assert.All(kept, b => Assert.Equal(b.Points, Points(b.RecordBatch)));
            var sums = (from b in kept let sum = (DoubleArray)b.RecordBatch.Column("sum") from r in Enumerable.Range(0, sum.Length) select sum.GetValue(r)!.Value).ToList();
            Assert.Equal(Enumerable.Range(0, 12).Sum(w => (w + 0.5) * ids.Length), sums.Sum());
            foreach (WindowBatch b in kept)
            {
                b.Dispose();
                Assert.Throws<ObjectDisposedException>(() => b.RecordBatch);
            }
        }
        finally
        {
            hung.TrySetResult();
            await pipeline.DisposeAsync();
        }
    }
}
