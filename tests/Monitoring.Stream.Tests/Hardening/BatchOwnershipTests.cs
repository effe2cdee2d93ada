using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>A batch is readable during the write; kept without <see cref="WindowBatch.Retain"/> it fails loudly, retained it stays exact.</summary>
public class BatchOwnershipTests
{
    private const int Windows = 50;

    /// <summary>Writes <see cref="Windows"/> windows of varying series and values, so reused column memory would show.</summary>
    private static void WriteVaryingWindows(MetricsPipeline pipeline)
    {
        using PointWriter writer = pipeline.CreateWriter("w");
        for (int w = 0; w < Windows; w++)
        {
            int series = 1 + (w * 7 % 13);
            for (int k = 0; k < series; k++)
            {
                for (int i = 0; i <= k % 3; i++)
                {
                    Assert.Equal(RejectReason.None, writer.Write("kept_seconds", [new Label("k", "k" + k)], (w * 100) + k + (i * 0.5), Scenario.T0 + (w * 1000L) + 10 + i));
                }
            }

            writer.Flush();
        }
    }

    [Fact]
    public async Task WindowBatch_KeptWithoutRetain_ReadAfterWriteThrowsObjectDisposed()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var careless = new ProbeSink("careless");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [careless]);
        pipeline.Start();
        WriteVaryingWindows(pipeline);
        await pipeline.StopAsync().Within("stop");

        Identities.AssertStopped(pipeline.GetMetrics());
        Assert.Equal(Windows, careless.Seen.Count);
        foreach (WindowBatch kept in careless.Seen)
        {
            Assert.Throws<ObjectDisposedException>(() => kept.RecordBatch);
            Assert.Throws<ObjectDisposedException>(() => kept.Retain());
        }
    }

    [Fact]
    public async Task WindowBatch_Retained_KeepsExactValuesOverFiftyWindowsAndDisposes()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var retained = new List<WindowBatch>();
        var keeper = new ProbeSink("keeper", call =>
        {
            lock (retained)
            {
                retained.Add(call.Batch.Retain());
            }

            return ValueTask.CompletedTask;
        });
        var copier = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 2), [keeper, copier]);
        pipeline.Start();
        WriteVaryingWindows(pipeline);
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);

        // Read the kept batches only now, long after their windows' memory would have been reused.
        Assert.Equal(m.WindowsEmitted, retained.Count);
        Assert.True(retained.Count >= Windows);
        var keptRows = retained.SelectMany(b => CollectingSink.Read(b.RecordBatch, b.Shard)).ToList();
        var copiedRows = copier.Rows;
        Assert.Equal(copiedRows.Count, keptRows.Count);
        static string Key(WindowRow r) => $"{r.WindowStartMs}|{r.Key}";
        var copied = copiedRows.ToDictionary(Key);
        foreach (WindowRow kept in keptRows)
        {
            WindowRow copy = copied[Key(kept)];
            Assert.Equal(copy.WindowEndMs, kept.WindowEndMs);
            Assert.Equal(copy.Count, kept.Count);
            Assert.Equal(copy.Sum, kept.Sum);
            Assert.Equal(copy.Min, kept.Min);
            Assert.Equal(copy.Max, kept.Max);
            Assert.Equal(copy.M2, kept.M2);
            Assert.Equal(copy.Last, kept.Last);
            Assert.Equal(copy.Quantiles, kept.Quantiles);
        }

        // And the values are the ones written, not only equal to one another.
        foreach (WindowRow row in keptRows)
        {
            long w = (row.WindowStartMs - Scenario.T0) / 1000;
            Assert.InRange(w, 0, Windows - 1);
            Assert.Equal(row.WindowStartMs + 1000, row.WindowEndMs);
            Assert.True(row.Min >= w * 100 && row.Max < (w * 100) + 100, $"row {row.Key} of window {w}: min {row.Min}, max {row.Max}");
        }

        foreach (WindowBatch batch in retained)
        {
            batch.Dispose();
            Assert.Throws<ObjectDisposedException>(() => batch.RecordBatch);
        }
    }

    [Fact]
    public async Task WindowBatch_SinkDisposesThePipelinesBatch_Throws()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        Exception? thrown = null;
        var sink = new ProbeSink("disposer", call =>
        {
            thrown = Record.Exception(call.Batch.Dispose);
            return ValueTask.CompletedTask;
        });
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 1);
        }

        await pipeline.StopAsync().Within("stop");
        Assert.Equal(1, sink.Calls);
        // The docs: Dispose throws InvalidOperationException on a batch that is the pipeline's, not a retained one.
        Assert.IsType<InvalidOperationException>(thrown);
    }
    [Fact]
    public async Task WindowBatch_WriteOutlivesItsTimeoutAndTheStop_StillReadsValidMemory()
    {
        var time = Scenario.Clock(Scenario.T0 + 100_000);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var readLate = new TaskCompletionSource<(long Start, long Count, double Sum)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var deaf = new ProbeSink("deaf", async call =>
        {
            if (call.Index != 1)
            {
                return;
            }

            // Ignores its token, and reads the batch only after the pipeline gave up on this write and stopped.
            await gate.Task;
            try
            {
                var counts = (Apache.Arrow.Int64Array)call.Batch.RecordBatch.Column("count");
                var sums = (Apache.Arrow.DoubleArray)call.Batch.RecordBatch.Column("sum");
                readLate.TrySetResult((call.Batch.WindowStartUnixMs, counts.GetValue(0)!.Value, sums.GetValue(0)!.Value));
            }
            catch (Exception e)
            {
                readLate.TrySetException(e);
            }
        });
        var options = new SinkOptions { AttemptTimeout = TimeSpan.FromSeconds(1), MaxAttempts = 1 };
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [new SinkRegistration(deaf, options)]);
        SeriesId id = pipeline.Registry.GetOrAdd("a_total");
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("w"))
        {
            Scenario.WriteWindows(writer, id, 0, 3);
        }

        await deaf.NextCallAsync().Within("the deaf sink's first write");
        time.Advance(TimeSpan.FromSeconds(1));
        await pipeline.StopAsync().Within("stop past the timed-out write");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(1, m.Sinks[0].BatchesFailed);
        Assert.Equal(1, m.Sinks[0].Timeouts);
        Assert.Equal(2, m.Sinks[0].BatchesWritten);

        gate.SetResult();
        (long start, long count, double sum) = await readLate.Task.Within("the late read");
        Assert.Equal(Scenario.T0, start);
        Assert.Equal(3, count);
        Assert.Equal(0 + 0.25 + 0.5, sum);
    }
}
