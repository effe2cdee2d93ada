using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Sinks;

/// <summary>The sink contract as the pipeline runs it: retries, failures counted, isolation, shutdown.</summary>
public class SinkRunnerTests
{
    private static readonly SinkOptions s_fastRetry = new()
    {
        QueueCapacity = 4,
        MaxAttempts = 3,
        InitialBackoff = TimeSpan.FromMilliseconds(1),
        MaxBackoff = TimeSpan.FromMilliseconds(5),
    };

    /// <summary>Fails its first <c>failures</c> writes, then behaves; optionally blocks until released.</summary>
    private sealed class ScriptedSink(string name, int failures, bool block = false) : IWindowSink
    {
        private int _calls;

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<long> Written { get; } = [];

        public string Name => name;

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            if (block)
            {
                await Release.Task.WaitAsync(cancellationToken);
            }

            if (Interlocked.Increment(ref _calls) <= failures)
            {
                throw new IOException($"{name} is down (attempt {_calls})");
            }

            lock (Written)
            {
                Written.Add(batch.Points);
            }
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>
    /// Writes one point into each of <paramref name="windows"/> consecutive windows that all end at
    /// least one window before the current one: the data closes all but the last, and the first clock
    /// tick (now − lateness is past its end, whatever the time of day) closes the last.
    /// </summary>
    private static async Task WriteWindows(MetricsPipeline pipeline, int windows)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        long start = now - (now % 10_000) - ((windows + 1) * 10_000L);
        using PointWriter writer = pipeline.CreateWriter("test");
        for (int w = 0; w < windows; w++)
        {
            writer.Write("m", [new Label("w", w.ToString(System.Globalization.CultureInfo.InvariantCulture))], w, start + (w * 10_000L));
        }

        writer.Flush();
        await pipeline.DrainAsync();
    }

    [Fact]
    public async Task FlakySink_RetriedUntilItSucceeds_ErrorsCounted()
    {
        var flaky = new ScriptedSink("flaky", failures: 2);
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [flaky], s_fastRetry);
        pipeline.Start();

        await WriteWindows(pipeline, 1);
        await pipeline.StopAsync();

        SinkMetrics m = Assert.Single(pipeline.GetMetrics().Sinks);
        Assert.Equal(1, m.BatchesWritten);
        Assert.Equal(2, m.Errors);
        Assert.Equal(0, m.BatchesFailed);
        Assert.Contains("flaky is down", m.LastError);
        Assert.Equal([1L], flaky.Written);
    }

    [Fact]
    public async Task BrokenSink_GivenUpAfterMaxAttempts_LossCountedOtherSinkUnaffected()
    {
        var broken = new ScriptedSink("broken", failures: int.MaxValue);
        var healthy = new CollectingSink();
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [broken, healthy], s_fastRetry);
        pipeline.Start();

        await WriteWindows(pipeline, 3);
        await pipeline.StopAsync();

        PipelineMetrics metrics = pipeline.GetMetrics();
        SinkMetrics b = metrics.Sinks.Single(s => s.Name == "broken");
        Assert.Equal(0, b.BatchesWritten);
        Assert.Equal(3, b.BatchesFailed);
        Assert.Equal(3, b.PointsFailed);
        Assert.Equal(9, b.Errors);
        Assert.Equal(3, metrics.Sinks.Single(s => s.Name == "collect").BatchesWritten);
        Assert.Equal(3, healthy.Rows.Count);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 1000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), "the condition did not hold within 10 s");
    }

    [Fact]
    public async Task StalledSink_OtherSinkKeepsReceivingUpToTheStalledQueueBound()
    {
        var stalled = new ScriptedSink("stalled", failures: 0, block: true);
        var healthy = new CollectingSink();
        var options = new SinkOptions { QueueCapacity = 2 };
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [stalled, healthy], options);
        pipeline.Start();
        try
        {
            // One batch in the stalled sink's hands plus two queued: the healthy sink gets all three.
            await WriteWindows(pipeline, 3);
            await WaitUntil(() => healthy.Batches.Count >= 3);

            Assert.Equal(3, healthy.Batches.Count);
            Assert.Equal(2, pipeline.GetMetrics().Sinks.Single(s => s.Name == "stalled").QueueDepth);
        }
        finally
        {
            stalled.Release.TrySetResult();
        }

        await pipeline.StopAsync();
        Assert.Equal(3, stalled.Written.Count);
        Assert.Equal(0, pipeline.GetMetrics().Sinks.Single(s => s.Name == "stalled").BatchesAbandoned);
    }

    [Fact]
    public async Task StalledSink_QueueFullInBytesBeforeBatches_ProducerWaitsThenEverythingWritten()
    {
        var stalled = new ScriptedSink("stalled", failures: 0, block: true);
        // Room for 64 batches but for one batch's bytes: one in the sink's hands, one queued, then the shard waits.
        var options = new SinkOptions { QueueCapacity = 64, QueueCapacityBytes = 1 };
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [stalled], options);
        pipeline.Start();
        try
        {
            await WriteWindows(pipeline, 4);
            await WaitUntil(() => pipeline.GetMetrics().Sinks[0].State == SinkState.Stalled);

            SinkMetrics sink = pipeline.GetMetrics().Sinks[0];
            Assert.Equal(1, sink.QueueDepth);
            Assert.True(sink.QueueBytes > 0, "the queued batch's bytes are counted");
            Assert.Equal(1, sink.QueueCapacityBytes);
        }
        finally
        {
            stalled.Release.TrySetResult();
        }

        await pipeline.StopAsync();
        SinkMetrics done = pipeline.GetMetrics().Sinks[0];
        Assert.Equal(4, stalled.Written.Count);
        Assert.Equal(4, done.BatchesWritten);
        Assert.Equal(0, done.BatchesDropped + done.BatchesAbandoned);
        Assert.Equal(0, done.QueueBytes);
    }

    [Fact]
    public async Task DropOldest_QueueFullInBytes_OldestDroppedAndCounted_NothingWaits()
    {
        var stalled = new ScriptedSink("stalled", failures: 0, block: true);
        var options = new SinkOptions { QueueCapacity = 64, QueueCapacityBytes = 1, QueuePolicy = SinkQueuePolicy.DropOldest };
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [stalled], options);
        pipeline.Start();
        try
        {
            // The queue holds one batch's bytes: each new window drops the one waiting, and the shard never
            // waits. Whether the first window reached the sink before the second came depends on the threads.
            await WriteWindows(pipeline, 5);
            await WaitUntil(() => pipeline.GetMetrics().WindowsEmitted == 5);
            SinkMetrics sink = pipeline.GetMetrics().Sinks[0];
            Assert.Equal(1, sink.QueueDepth);
            Assert.InRange(sink.BatchesDropped, 3, 4);
            Assert.NotEqual(SinkState.Stalled, sink.State);
        }
        finally
        {
            stalled.Release.TrySetResult();
        }

        await pipeline.StopAsync();
        PipelineMetrics m = pipeline.GetMetrics();
        SinkMetrics done = m.Sinks[0];
        Assert.Equal(5, done.BatchesWritten + done.BatchesDropped);
        Assert.InRange(done.BatchesDropped, 3, 4);
        Assert.Equal(m.EmittedPoints, done.PointsWritten + done.PointsDropped);
        Assert.Equal(0, done.QueueBytes);
    }

    [Fact]
    public async Task SecondStopSignal_AbandonsStalledSinkAtOnce_AndCountsWhatItLost()
    {
        var stalled = new ScriptedSink("stalled", failures: 0, block: true);
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [stalled]);
        pipeline.Start();
        await WriteWindows(pipeline, 2);

        using var secondSignal = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipeline.StopAsync(secondSignal.Token));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"stop took {clock.Elapsed}");
        Assert.Empty(stalled.Written);

        // The write in the stalled sink's hands is cancelled; both windows are counted as abandoned.
        SinkMetrics m = Assert.Single(pipeline.GetMetrics().Sinks);
        await WaitUntil(() => pipeline.GetMetrics().Sinks[0].BatchesAbandoned == 2);
        m = Assert.Single(pipeline.GetMetrics().Sinks);
        Assert.Equal(2, m.BatchesAbandoned);
        Assert.Equal(2, m.PointsAbandoned);
        Assert.Equal(0, m.BatchesWritten);
    }

    [Fact]
    public async Task GracefulStop_PastShutdownTimeout_ThrowsTimeout_AndCountsWhatWasAbandoned()
    {
        var stalled = new ScriptedSink("stalled", failures: 0, block: true);
        var healthy = new CollectingSink();
        var pipelineOptions = new MetricsPipelineOptions { ShardCount = 1, ShutdownTimeout = TimeSpan.FromMilliseconds(300) };
        await using var pipeline = new MetricsPipeline(pipelineOptions, [stalled, healthy], new SinkOptions { QueueCapacity = 1 });
        pipeline.Start();
        await WriteWindows(pipeline, 3);
        await WaitUntil(() => healthy.Batches.Count >= 2);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        TimeoutException e = await Assert.ThrowsAsync<TimeoutException>(() => pipeline.StopAsync());

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"stop took {clock.Elapsed}");
        Assert.Contains("abandoned", e.Message);
        await WaitUntil(() => pipeline.GetMetrics().Sinks.Single(s => s.Name == "stalled").BatchesAbandoned == 3);
        PipelineMetrics metrics = pipeline.GetMetrics();
        SinkMetrics s = metrics.Sinks.Single(s => s.Name == "stalled");
        Assert.Equal(3, s.BatchesAbandoned);
        Assert.Equal(0, s.BatchesWritten);

        // Every window the healthy sink did not get is counted too: nothing is lost without a number.
        SinkMetrics h = metrics.Sinks.Single(s => s.Name == "collect");
        Assert.Equal(3, h.BatchesWritten + h.BatchesAbandoned);
    }

    [Fact]
    public void ShutdownTimeout_MustBePositiveOrInfinite()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MetricsPipeline(new MetricsPipelineOptions { ShutdownTimeout = TimeSpan.Zero }, []));
        var infinite = new MetricsPipeline(new MetricsPipelineOptions { ShutdownTimeout = Timeout.InfiniteTimeSpan }, []);
        Assert.Equal(Timeout.InfiniteTimeSpan, infinite.Options.ShutdownTimeout);
    }
}
