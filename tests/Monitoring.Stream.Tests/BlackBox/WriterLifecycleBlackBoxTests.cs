using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Black-box probes of the writers' life, from README.md ("A PointWriter is for one thread at a time ... two threads at
/// once get an InvalidOperationException, counted in WriterMisuse"; writes after Dispose/StopAsync are WriterClosed)
/// and docs/event-time.md (a graceful stop skips a writer busy inside a call, which counts its points as dropped,
/// PipelineStopped). Every scenario ends with the accounting identities.
/// </summary>
public class WriterLifecycleBlackBoxTests
{
    /// <summary>
    /// A pipeline whose one shard is held by a gated sink (queue of one window), so that its owner thread ends up
    /// waiting inside <see cref="PointWriter.Write(SeriesId, double, long)"/> on a full shard channel (Wait mode).
    /// </summary>
    private sealed class BlockedOwner : IAsyncDisposable
    {
        private readonly SemaphoreSlim _permits = new(0);
        private readonly SemaphoreSlim _roundsDone = new(0);
        private readonly Thread _owner;
        private volatile bool _stop;
        private long _calls;
        private long _refusedByReturn;

        private BlockedOwner()
        {
            Time = Scenario.Clock(Scenario.T0);
            Sink = new ProbeSink("gated", _ => new ValueTask(Release.Task));
            MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(Time, shards: 1, windowMs: 1000, latenessMs: 1000, idleMs: 60_000);
            options.BatchSize = 8;
            options.ShardQueueBatches = 2;
            options.ShutdownTimeout = TimeSpan.FromMinutes(10); // on the fake clock: never the reason a stop ends here
            Pipeline = new MetricsPipeline(options, [new SinkRegistration(Sink, new SinkOptions { QueueCapacity = 1, AttemptTimeout = Timeout.InfiniteTimeSpan })]);
            Ids = EventTimeBlackBoxTests.Register(Pipeline, 4, "owner_seconds");
            Pipeline.Start();
            Writer = Pipeline.CreateWriter("owner", BackpressureMode.Wait);
            _owner = new Thread(Run) { IsBackground = true, Name = "owner" };
            _owner.Start();
        }

        public FakeTimeProvider Time { get; }

        public ProbeSink Sink { get; }

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public MetricsPipeline Pipeline { get; }

        public SeriesId[] Ids { get; }

        public PointWriter Writer { get; }

        public Exception? Failure { get; private set; }

        /// <summary>Write calls of the owner that returned (not thrown).</summary>
        public long Calls => Interlocked.Read(ref _calls);

        /// <summary>Those of them that returned a refusal.</summary>
        public long RefusedByReturn => Interlocked.Read(ref _refusedByReturn);

        public Dictionary<RejectReason, long> Returned { get; } = [];

        /// <summary>Starts the pipeline and drives the owner until it waits inside a write on the full shard.</summary>
        public static async Task<BlockedOwner> StartAsync()
        {
            var o = new BlockedOwner();
            o._permits.Release();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long seenCalls = -1;
            while (true)
            {
                Assert.Null(o.Failure);
                if (o._roundsDone.Wait(0))
                {
                    // One second of event time per round: windows close, the sink holds the first, its queue the second,
                    // the shard waits to hand over the third; then the shard's channel fills and the owner waits in a write.
                    o.Time.Advance(TimeSpan.FromSeconds(1));
                    o._permits.Release();
                }

                PipelineMetrics m = o.Pipeline.GetMetrics();
                bool blocked = m.ShardQueueDepth[0] == m.ShardQueueCapacity && m.Sinks[0].QueueDepth == 1 && o.Sink.Calls == 1
                    && o._roundsDone.CurrentCount == 0 && (o._owner.ThreadState & ThreadState.WaitSleepJoin) != 0;
                if (blocked && seenCalls == o.Calls)
                {
                    break; // the same call still waiting a poll later
                }

                seenCalls = blocked ? o.Calls : -1;
                Assert.True(
                    clock.Elapsed < Signals.Bound,
                    $"the owner did not block on a full shard: calls {o.Calls}, rounds done {o._roundsDone.CurrentCount}, state {o._owner.ThreadState}, depth {m.ShardQueueDepth[0]}, sink queue {m.Sinks[0].QueueDepth}, sink calls {o.Sink.Calls}");
                await Task.Delay(20);
            }

            return o;
        }

        /// <summary>Whether the owner's current round (the blocked write's) has finished.</summary>
        public Task<bool> RoundFinishedAsync() => _roundsDone.WaitAsync(Signals.Bound);

        private void Run()
        {
            try
            {
                long k = 0;
                while (_permits.Wait(Signals.Bound * 4) && !_stop)
                {
                    // One second of event time, 8 points: exactly one full batch, handed over by the last write.
                    long start = Scenario.T0 - 2_000;
                    for (int i = 0; i < 8; i++, k++)
                    {
                        RejectReason r = Writer.Write(Ids[i % 4], i, start + (k * 125));
                        Interlocked.Increment(ref _calls);
                        if (r != RejectReason.None)
                        {
                            Interlocked.Increment(ref _refusedByReturn);
                            lock (Returned)
                            {
                                Returned[r] = Returned.GetValueOrDefault(r) + 1;
                            }
                        }
                    }

                    _roundsDone.Release();
                }
            }
            catch (Exception e)
            {
                Failure = e;
                _roundsDone.Release();
            }
        }

        public void EndOwner()
        {
            _stop = true;
            _permits.Release(100);
            Assert.True(_owner.Join(Signals.Bound), "the owner thread did not end");
        }

        public async ValueTask DisposeAsync()
        {
            Release.TrySetResult();
            _stop = true;
            _permits.Release(100);
            _owner.Join(Signals.Bound);
            // A test that forced the stop already asserted on it; a later stop call only reports that again.
            _ = await Record.ExceptionAsync(() => EventTimeBlackBoxTests.StopBounded(Pipeline));
        }
    }

    private static void AssertCallSeesInvalidOperation(Action call, string what)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                call();
                failure = new Xunit.Sdk.XunitException($"{what} from a second thread while the owner is inside a write did not throw");
            }
            catch (InvalidOperationException)
            {
            }
            catch (Exception e)
            {
                failure = new Xunit.Sdk.XunitException($"{what} threw {e.GetType().Name} instead of InvalidOperationException: {e.Message}");
            }
        })
        { IsBackground = true };
        thread.Start();
        Assert.True(thread.Join(Signals.Bound), $"{what} from a second thread hung while the owner waits on a full shard");
        Assert.Null(failure);
    }

    [Fact]
    public async Task Write_SecondThreadWhileOwnerWaitsOnAFullShard_EveryCallRefusedWithInvalidOperationCountedNotOffered()
    {
        await using BlockedOwner o = await BlockedOwner.StartAsync();
        PipelineMetrics before = o.Pipeline.GetMetrics();
        Assert.Equal(0, before.WriterMisuse);

        // The owner is inside a write: every call from another thread is refused before it touches anything.
        AssertCallSeesInvalidOperation(() => o.Writer.Write(o.Ids[0], 1.0, Scenario.T0), "Write(id, value, ts)");
        AssertCallSeesInvalidOperation(() => o.Writer.Write(o.Ids[1], 1.0), "Write(id, value)");
        AssertCallSeesInvalidOperation(() => o.Writer.Write("owner_seconds", [new Label("k", "k2")], 1.0, Scenario.T0), "Write(metric, labels, value, ts)");
        AssertCallSeesInvalidOperation(o.Writer.Flush, "Flush()");
        AssertCallSeesInvalidOperation(() => o.Writer.Checkpoint(1), "Checkpoint(1)");
        AssertCallSeesInvalidOperation(o.Writer.Dispose, "Dispose()");

        PipelineMetrics during = o.Pipeline.GetMetrics();
        Assert.True(during.WriterMisuse >= 3, $"three writes from a second thread were refused, WriterMisuse = {during.WriterMisuse}");
        Assert.Equal(before.Offered, during.Offered); // a refused misuse is not a point offered
        BlackBoxAccounting.AssertIdentities(during);

        // Released, the owner goes on as if nothing happened, and every point it wrote is in a window.
        o.Release.TrySetResult();
        Assert.True(await o.RoundFinishedAsync(), "the owner was not released");
        o.EndOwner();
        Assert.Null(o.Failure);
        o.Writer.Flush();
        o.Writer.Dispose();
        await o.Pipeline.StopAsync().Within("stop");
        PipelineMetrics m = o.Pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.Faults);
        Assert.Equal(o.Calls, m.Offered);
        Assert.Equal(0, o.RefusedByReturn);
        Assert.Equal(o.Calls, m.EmittedPoints);
        Assert.Equal(m.EmittedPoints, o.Sink.PointsRead);
    }

    [Fact]
    public async Task StopAsync_GracefulWhileOwnerWaitsOnAFullShard_OwnerReturnsAndEveryPointAccounted()
    {
        await using BlockedOwner o = await BlockedOwner.StartAsync();
        Task stop = o.Pipeline.StopAsync();
        Assert.False(stop.IsCompleted, "the stop finished while the sink held a window (the test proves nothing then)");
        o.Release.TrySetResult();
        await stop.Within("graceful stop after the sink was released");
        Assert.True(await o.RoundFinishedAsync(), "the owner's write never returned after the stop");
        o.EndOwner();
        Assert.Null(o.Failure);

        // Later writes of the stopped writer are refused as closed.
        Assert.Equal(RejectReason.WriterClosed, o.Writer.Write(o.Ids[0], 1.0, Scenario.T0));
        PipelineMetrics m = o.Pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(o.Calls + 1, m.Offered);
        Assert.Equal(o.RefusedByReturn + 1, m.Rejected);
        Assert.Equal(m.Rejected, m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed));
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
        Assert.Equal(m.EmittedPoints, o.Sink.PointsRead);
    }

    [Fact]
    public async Task StopAsync_ForcedWhileOwnerWaitsOnAFullShard_OwnerReturnsNothingPendingLossesCounted()
    {
        await using BlockedOwner o = await BlockedOwner.StartAsync();
        using var second = new CancellationTokenSource();
        Task stop = o.Pipeline.StopAsync(second.Token);
        await second.CancelAsync();
        Exception? thrown = await Record.ExceptionAsync(() => stop.Within("forced stop"));
        Assert.True(thrown is OperationCanceledException, $"a forced stop throws OperationCanceledException, got {thrown}");

        // A later call without a signal reports the forced stop as it was, forced by a signal (no timeout passed). It returns at once.
        Exception? again = await Record.ExceptionAsync(() => o.Pipeline.StopAsync().Within("a second stop after the forced one"));
        Assert.True(again is OperationCanceledException, $"StopAsync after a forced stop threw {again}");

        // The sink is never released: the owner must not wait for ever on a shard that stopped.
        Assert.True(await o.RoundFinishedAsync(), "the owner's write never returned after a forced stop (it waits on a stopped shard)");
        o.EndOwner();
        Assert.Null(o.Failure);
        PipelineMetrics m = o.Pipeline.GetMetrics();
        BlackBoxAccounting.AssertIdentities(m);
        Assert.Equal(0, m.Pending);
        Assert.Equal(o.Calls, m.Offered);
        Assert.Equal(o.RefusedByReturn, m.Rejected);
        foreach (SinkMetrics s in m.Sinks)
        {
            Assert.Equal(m.WindowsEmitted, s.BatchesWritten + s.BatchesFailed + s.BatchesDropped + s.BatchesAbandoned);
            Assert.True(s.BatchesAbandoned > 0, "the windows the held sink never finished are abandoned");
        }
    }

    [Fact]
    public async Task SharedWriter_ThreadsWriteWhileTheirWritersAreDisposed_EveryCallReturnsAndIsAccounted()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 2);
        options.ShardQueueBatches = 1024;
        await using var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 32, "shared_seconds");
        pipeline.Start();

        const int Writers = 6;
        const int Threads = 6;
        SharedPointWriter[] shared = [.. Enumerable.Range(0, Writers).Select(w => pipeline.CreateSharedWriter("shared-" + w))];
        long[,] calls = new long[Threads, Writers];
        long[,] closed = new long[Threads, Writers];
        long[,] other = new long[Threads, Writers];
        var failures = new Exception?[Threads];
        using var warmedUp = new CountdownEvent(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                // Writes before, during and after the disposals: on until every writer has refused this thread once.
                int seenClosed = 0;
                for (int i = 0; i < 5_000_000 && (i <= 5_000 || seenClosed != (1 << Writers) - 1); i++)
                {
                    if (i == 5_000)
                    {
                        warmedUp.Signal();
                    }

                    int w = (i + t) % Writers;
                    RejectReason r = (i & 3) switch
                    {
                        0 => shared[w].Write(ids[i & 31], 1.0),
                        1 => shared[w].Write("shared_seconds", [new Label("k", "k" + (i & 31))], 1.0, Scenario.T0),
                        _ => shared[w].Write(ids[i & 31], 1.0, Scenario.T0 + (i & 511)),
                    };
                    calls[t, w]++;
                    if (r == RejectReason.WriterClosed)
                    {
                        closed[t, w]++;
                        seenClosed |= 1 << w;
                    }
                    else if (r != RejectReason.None)
                    {
                        other[t, w]++;
                    }
                }
            }
            catch (Exception e)
            {
                failures[t] = e;
            }
        }) { IsBackground = true })];
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        Assert.True(warmedUp.Wait(Signals.Bound), "the writing threads did not get going");

        // Dispose the writers from the pool while the threads write through them.
        Task[] disposals = [.. Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            shared[w].Dispose();
            shared[w].Dispose(); // twice: never throws
        }))];
        await Task.WhenAll(disposals).Within("concurrent disposals");
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(Signals.Bound * 2), "a writing thread hung");
        }

        Assert.All(failures, f => Assert.Null(f));
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.WriterMisuse);
        Assert.Equal(0, m.Faults);
        long allCalls = 0, allClosed = 0, allOther = 0;
        for (int w = 0; w < Writers; w++)
        {
            long c = 0, cl = 0;
            for (int t = 0; t < Threads; t++)
            {
                c += calls[t, w];
                cl += closed[t, w];
                allOther += other[t, w];
            }

            allCalls += c;
            allClosed += cl;
            SourceMetrics source = Assert.Single(m.Sources, s => s.Source == "shared-" + w);
            Assert.Equal(c, source.Offered);
            Assert.Equal(cl, source.Rejected);
        }

        Assert.Equal(0, allOther);
        Assert.True(allClosed > 0, "no write came after a disposal (the test proves nothing then)");
        Assert.Equal(allCalls, m.Offered);
        Assert.Equal(allClosed, m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed));
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
        Assert.Equal(m.EmittedPoints, sink.Rows.Sum(r => r.Count));
    }

    [Fact]
    public async Task SharedWriter_ThreadEndsWithPointsBuffered_EngineFlushesThemWithoutAFlushCall()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(EventTimeBlackBoxTests.Options(time, shards: 2), [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 4, "gone_seconds");
        pipeline.Start();
        SharedPointWriter shared = pipeline.CreateSharedWriter("threads-that-end");

        // Fewer points than a batch, written by threads that end without a Flush.
        for (int t = 0; t < 3; t++)
        {
            var thread = new Thread(() =>
            {
                for (int i = 0; i < 5; i++)
                {
                    Assert.Equal(RejectReason.None, shared.Write(ids[i % 4], 2.0));
                }
            });
            thread.Start();
            Assert.True(thread.Join(Signals.Bound));
        }

        Assert.Equal(15, pipeline.GetMetrics().Offered);
        Assert.Equal(15, pipeline.GetMetrics().Pending);

        // Within the flush interval of the engine's clock, the engine hands them over.
        for (int step = 0; step < 3 && pipeline.GetMetrics().Pending > 0; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(200));
            await Signals.Until(() => pipeline.GetMetrics().Pending == 0 || step < 2, "the engine's flush of the ended threads' buffers");
        }

        Assert.Equal(0, pipeline.GetMetrics().Pending);
        Assert.Equal(15, pipeline.GetMetrics().Accepted);
        await pipeline.StopAsync().Within("stop");
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(15, m.EmittedPoints);
        Assert.Equal(30.0, sink.Rows.Sum(r => r.Sum));
        shared.Dispose();
    }

    [Fact]
    public async Task Write_AfterDisposeAndAfterStop_EveryOverloadRefusedWriterClosedAndCounted()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(EventTimeBlackBoxTests.Options(time, shards: 2), [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 2, "closed_seconds");
        pipeline.Start();

        PointWriter disposed = pipeline.CreateWriter("disposed");
        Assert.Equal(RejectReason.None, disposed.Write(ids[0], 1.0, Scenario.T0));
        disposed.Dispose();
        disposed.Dispose(); // twice: never throws
        Assert.Equal(RejectReason.WriterClosed, disposed.Write(ids[0], 1.0, Scenario.T0));
        Assert.Equal(RejectReason.WriterClosed, disposed.Write(ids[0], 1.0));
        Assert.Equal(RejectReason.WriterClosed, disposed.Write("closed_seconds", [new Label("k", "k0")], 1.0));
        Assert.Equal(RejectReason.WriterClosed, disposed.Write("closed_seconds", [new Label("k", "k0")], 1.0, Scenario.T0));
        Exception? flushAfterDispose = Record.Exception(disposed.Flush);
        Assert.True(flushAfterDispose is null or ObjectDisposedException, $"Flush after Dispose: {flushAfterDispose}");

        SharedPointWriter sharedDisposed = pipeline.CreateSharedWriter("shared-disposed");
        sharedDisposed.Dispose();
        Assert.Equal(RejectReason.WriterClosed, sharedDisposed.Write(ids[1], 1.0));
        Assert.Equal(RejectReason.WriterClosed, sharedDisposed.Write("closed_seconds", [new Label("k", "k1")], 1.0, Scenario.T0));

        PointWriter live = pipeline.CreateWriter("live-at-stop");
        SharedPointWriter sharedLive = pipeline.CreateSharedWriter("shared-live-at-stop");
        Assert.Equal(RejectReason.None, live.Write(ids[1], 1.0, Scenario.T0));
        Assert.Equal(RejectReason.None, sharedLive.Write(ids[1], 1.0, Scenario.T0));
        await pipeline.StopAsync().Within("stop");

        Assert.Equal(RejectReason.WriterClosed, live.Write(ids[1], 1.0, Scenario.T0));
        Assert.Equal(RejectReason.WriterClosed, live.Write(ids[1], 1.0));
        Assert.Equal(RejectReason.WriterClosed, sharedLive.Write(ids[1], 1.0));
        Assert.Equal(RejectReason.WriterClosed, sharedLive.Write("closed_seconds", [new Label("k", "k1")], 1.0));
        live.Dispose();
        sharedLive.Dispose();

        // A writer created after the stop: refused at creation or refuses every write; never accepts.
        PointWriter? late = null;
        Exception? create = Record.Exception(() => late = pipeline.CreateWriter("after-stop"));
        Assert.True(create is null or InvalidOperationException or ObjectDisposedException, $"CreateWriter after stop: {create}");
        long lateOffered = 0;
        if (late is not null)
        {
            Assert.Equal(RejectReason.WriterClosed, late.Write(ids[0], 1.0, Scenario.T0));
            lateOffered = 1;
            late.Dispose();
        }

        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(3, m.Accepted);
        Assert.Equal(3, m.EmittedPoints);
        Assert.Equal(10 + lateOffered, m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed));
        Assert.Equal(m.Rejected, m.RejectedByReason.GetValueOrDefault(RejectReason.WriterClosed));
        Assert.Equal(13 + lateOffered, m.Offered);
        Assert.Equal(5, m.Sources.Single(s => s.Source == "disposed").Offered);
        Assert.Equal(3, m.Sources.Single(s => s.Source == "shared-live-at-stop").Offered);
    }

    [Fact]
    public async Task StopAsync_EightConcurrentCallsWithDisposeAsyncWhileThreadsWrite_AllCompleteIdentitiesHold()
    {
        var time = Scenario.Clock(Scenario.T0);
        var sink = new CollectingSink();
        MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 2);
        options.ShardQueueBatches = 1024;
        var pipeline = new MetricsPipeline(options, [sink]);
        SeriesId[] ids = EventTimeBlackBoxTests.Register(pipeline, 8, "stops_seconds");
        pipeline.Start();
        SharedPointWriter shared = pipeline.CreateSharedWriter("during-stop", BackpressureMode.Wait);
        PointWriter[] own = [.. Enumerable.Range(0, 3).Select(i => pipeline.CreateWriter("own-" + i))];
        long[] calls = new long[6];
        long[] refused = new long[6];
        var failures = new Exception?[6];
        using var started = new CountdownEvent(6);
        var keepGoing = true;
        Thread[] threads = [.. Enumerable.Range(0, 6).Select(t => new Thread(() =>
        {
            try
            {
                for (int i = 0; Volatile.Read(ref keepGoing) || i < 1000; i++)
                {
                    if (i == 100)
                    {
                        started.Signal();
                    }

                    RejectReason r = t < 3 ? own[t].Write(ids[i & 7], 1.0, Scenario.T0 + (i & 255)) : shared.Write(ids[i & 7], 1.0);
                    calls[t]++;
                    if (r != RejectReason.None)
                    {
                        Assert.Equal(RejectReason.WriterClosed, r);
                        refused[t]++;
                    }

                    if (i > 1000 && refused[t] > 100)
                    {
                        return;
                    }
                }
            }
            catch (Exception e)
            {
                failures[t] = e;
                if (!started.IsSet)
                {
                    started.Signal();
                }
            }
        }) { IsBackground = true })];
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        Assert.True(started.Wait(Signals.Bound), "the writers did not start");
        Task[] stops = [.. Enumerable.Range(0, 8).Select(_ => Task.Run(() => pipeline.StopAsync()))];
        Task dispose = Task.Run(async () => await pipeline.DisposeAsync());
        await Task.WhenAll(stops).Within("eight concurrent stops");
        await dispose.Within("DisposeAsync during the stops");
        Volatile.Write(ref keepGoing, false);
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(Signals.Bound), "a writing thread hung after the stop");
        }

        Assert.All(failures, f => Assert.Null(f));
        foreach (PointWriter w in own)
        {
            w.Dispose();
        }

        shared.Dispose();
        PipelineMetrics m = pipeline.GetMetrics();
        BlackBoxAccounting.AssertStoppedGracefully(m);
        Assert.Equal(0, m.WriterMisuse);
        Assert.Equal(calls.Sum(), m.Offered);
        Assert.Equal(refused.Sum(), m.Rejected);
        Assert.Equal(m.Accepted + m.Dropped, m.Offered - m.Rejected);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late);
        Assert.Equal(m.EmittedPoints, sink.Rows.Sum(r => r.Count));
    }
}
