using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 8 (black box, README.md "Stopping" and docs/event-time.md): stops that begin while Wait writers wait on a full
/// shard behind a sink that holds its windows. A graceful stop may drop nothing a Wait writer was told it accepted,
/// also when writers are disposed and a drain races it; a forced stop counts everything it
/// abandons; every caller's return value matches the counters. And a Wait writer held back longer than
/// SourceIdleTimeout: its next in-order points are not late.
/// </summary>
public class Probe8StopBlackBoxTests
{
    /// <summary>A sink whose call n waits for gate n (cancellable), then keeps the rows as <see cref="CollectingSink"/> does.</summary>
    internal sealed class GatedSink : IWindowSink
    {
        private readonly CollectingSink _rows = new();
        private int _calls;

        public BlackBoxGates Gates { get; } = new();

        public int Calls => Volatile.Read(ref _calls);

        public IReadOnlyList<WindowRow> Rows => _rows.Rows;

        public string Name => "gated";

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            int call = Interlocked.Increment(ref _calls);
            await Gates.For(call).WaitAsync(cancellationToken);
            await _rows.WriteAsync(batch, cancellationToken);
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>One producing thread of the stop scenarios.</summary>
    internal sealed class StopProducer(int index, string source, BackpressureMode mode, bool shared, bool disposesOnStop)
    {
        private long _inCallSince;

        public int Index { get; } = index;

        public string Source { get; } = source;

        public BackpressureMode Mode { get; } = mode;

        public bool Shared { get; } = shared;

        public bool DisposesOnStop { get; } = disposesOnStop;

        public string Metric => "p8_stop_" + Source.Replace('-', '_');

        public Probe8Ledger Ledger { get; } = new();

        public Exception? Failure { get; set; }

        public volatile bool SawClosed;

        public int RefusedAfterClosed;

        public int LateCalls;

        /// <summary>How long the current call has been running, or zero.</summary>
        public TimeSpan InCall
        {
            get
            {
                long since = Interlocked.Read(ref _inCallSince);
                return since == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(since);
            }
        }

        public void Enter() => Interlocked.Exchange(ref _inCallSince, Stopwatch.GetTimestamp());

        public void Leave() => Interlocked.Exchange(ref _inCallSince, 0);
    }

    internal sealed record StopRig(
        MetricsPipeline Pipeline, GatedSink Sink, FakeTimeProvider Time, List<StopProducer> Producers, List<Thread> Threads,
        SharedPointWriter SharedWait, SharedPointWriter SharedDrop, ManualResetEventSlim Stopping, Probe8Ledger Closer);

    /// <summary>
    /// Two shards, queues of 2 batches, a sink queue of 1: windows 0..4 written by a closer close 0..3 (8 batches), so the
    /// sink holds one, its queue another and both shards wait with the next; the producers (created after, writing into
    /// window 4, which stays open: the fake clock does not move) fill the shards' queues until every Wait producer is
    /// inside a call for 300 ms.
    /// </summary>
    internal static async Task<StopRig> StartRig(int batchSize, int variant = 0)
    {
        FakeTimeProvider time = Scenario.Clock(Scenario.T0 + 4_500);
        MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 2, windowMs: 1000, latenessMs: 0, idleMs: 3_600_000);
        options.BatchSize = batchSize;
        options.ShardQueueBatches = 2;
        options.ShutdownTimeout = TimeSpan.FromDays(1);
        var sink = new GatedSink();
        var pipeline = new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { QueueCapacity = 1, AttemptTimeout = Timeout.InfiniteTimeSpan })]);
        pipeline.Start();
        // The closer writes on its own thread: with small batches it may itself wait for room once the shards are
        // stuck (a Wait writer), and then its points too are caught by the stop.
        var closerLedger = new Probe8Ledger();
        Exception? closerFailure = null;
        var closerThread = new Thread(() =>
        {
            try
            {
                using PointWriter closer = pipeline.CreateWriter("closer", BackpressureMode.Wait);
                for (int w = 0; w < 5; w++)
                {
                    for (int k = 0; k < 2; k++)
                    {
                        Label[] labels = [new("k", "k" + k)];
                        double v = (w * 10) + k;
                        long ts = Scenario.T0 + (w * 1000L) + 1;
                        closerLedger.Record(closer.Write("p8_stop_closer", labels, v, ts), Probe8Ledger.Key("p8_stop_closer", labels), ts - 1, v);
                    }

                    closer.Flush();
                }
            }
            catch (Exception e)
            {
                closerFailure = e;
            }
        })
        { IsBackground = true, Name = "closer" };
        closerThread.Start();
        await Signals.Until(() => sink.Calls == 1 && pipeline.GetMetrics().Sinks[0].QueueDepth == 1, "the sink holds a window and its queue another");
        var producers = new List<StopProducer>
        {
            new(0, "own-wait", BackpressureMode.Wait, shared: false, disposesOnStop: false),
            new(1, "own-wait-disposed", BackpressureMode.Wait, shared: false, disposesOnStop: true),
            new(2, "own-drop", BackpressureMode.DropNewest, shared: false, disposesOnStop: false),
            new(3, "shared-wait", BackpressureMode.Wait, shared: true, disposesOnStop: false),
            new(4, "shared-wait", BackpressureMode.Wait, shared: true, disposesOnStop: false),
            new(5, "shared-wait", BackpressureMode.Wait, shared: true, disposesOnStop: false),
            new(6, "shared-drop", BackpressureMode.DropNewest, shared: true, disposesOnStop: false),
        };

        // Variants (Probe8FindingsTests): 1 without DropNewest producers, 2 without shared writers, 3 one own Wait writer.
        if (variant == 1)
        {
            producers.RemoveAll(p => p.Mode == BackpressureMode.DropNewest);
        }
        else if (variant == 2)
        {
            producers.RemoveAll(p => p.Shared);
        }
        else if (variant == 3)
        {
            producers.RemoveAll(p => p.Index != 0);
        }

        SharedPointWriter sharedWait = pipeline.CreateSharedWriter("shared-wait", BackpressureMode.Wait);
        SharedPointWriter sharedDrop = pipeline.CreateSharedWriter("shared-drop", BackpressureMode.DropNewest);
        var stopping = new ManualResetEventSlim();
        var threads = new List<Thread> { closerThread };
        foreach (StopProducer p in producers)
        {
            PointWriter? own = p.Shared ? null : pipeline.CreateWriter(p.Source, p.Mode);
            SharedPointWriter? shared = !p.Shared ? null : p.Mode == BackpressureMode.Wait ? sharedWait : sharedDrop;
            var thread = new Thread(() => Produce(p, own, shared, stopping)) { IsBackground = true, Name = p.Source + "#" + p.Index };
            threads.Add(thread);
            thread.Start();
        }

        await Signals.Until(
            () => producers.Where(p => p.Mode == BackpressureMode.Wait).All(p => p.InCall > TimeSpan.FromMilliseconds(300)) || producers.Any(p => p.Failure is not null),
            "every Wait producer waiting inside a call on a full shard");
        Assert.All(producers, p => Assert.Null(p.Failure));
        Assert.Null(closerFailure);
        return new StopRig(pipeline, sink, time, producers, threads, sharedWait, sharedDrop, stopping, closerLedger);
    }

    internal static void Produce(StopProducer p, PointWriter? own, SharedPointWriter? shared, ManualResetEventSlim stopping)
    {
        try
        {
            string t = p.Index.ToString(CultureInfo.InvariantCulture);
            Label[][] labels = [.. Enumerable.Range(0, 4).Select(k => new[] { new Label("t", t), new Label("k", "k" + k) })];
            string[] keys = [.. labels.Select(l => Probe8Ledger.Key(p.Metric, l))];
            bool disposed = false;
            long i = 0;
            while (true)
            {
                if (p.DisposesOnStop && !disposed && stopping.IsSet)
                {
                    own!.Dispose(); // from the owning thread, racing the stop's close and flush of the same writer
                    disposed = true;
                }

                long ts = Scenario.T0 + 4_500 + (i % 400);
                double value = ((p.Index + 1) * 10_000_000.0) + i;
                int k = (int)(i % 4);
                p.Enter();
                RejectReason r = own is not null ? own.Write(p.Metric, labels[k], value, ts) : shared!.Write(p.Metric, labels[k], value, ts);
                p.Leave();
                if (stopping.IsSet && r != RejectReason.WriterClosed)
                {
                    p.LateCalls++;
                }

                p.Ledger.Record(r, keys[k], Scenario.T0 + 4_000, value);
                i++;
                if (r == RejectReason.WriterClosed)
                {
                    break;
                }

                if (p.Mode == BackpressureMode.DropNewest && i % 256 == 0)
                {
                    Thread.Sleep(1); // a dropping writer never waits; leave the cores to the others
                }
            }

            p.SawClosed = true;
            for (int n = 0; n < 20; n++)
            {
                RejectReason r = own is not null ? own.Write(p.Metric, labels[0], 1, Scenario.T0 + 4_500) : shared!.Write(p.Metric, labels[0], 1, Scenario.T0 + 4_500);
                p.Ledger.Record(r, keys[0], Scenario.T0 + 4_000, 1);
                if (r == RejectReason.WriterClosed)
                {
                    p.RefusedAfterClosed++;
                }
            }

            own?.Dispose();
        }
        catch (Exception e)
        {
            p.Failure = e;
        }
    }

    internal static async Task UntilAllClosed(StopRig rig, Task stop)
    {
        try
        {
            // A writer disposed during the stop hands its own points over: a Wait writer's Dispose may wait for room,
            // so only the write calls are expected back while the sink holds its window.
            await Signals.Until(() => rig.Producers.All(p => p.SawClosed || p.DisposesOnStop || p.Failure is not null), "every producer's write call returning after the stop began, the sink still held");
        }
        catch (Xunit.Sdk.XunitException e)
        {
            Assert.Fail(e.Message + ": " + State(rig, stop));
        }
    }

    internal static string State(StopRig rig, Task stop) =>
        string.Join(", ", rig.Producers.Select(p => $"{p.Source}#{p.Index} in call {p.InCall.TotalMilliseconds:F0} ms, closed {p.SawClosed}")) +
        $"; closer thread alive {rig.Threads[0].IsAlive}; stop task {stop.Status}";

    /// <summary>Every call is in exactly one counter, per source and per reason, and the counter says what the caller was told.</summary>
    internal static void AssertCallersMatchCounters(StopRig rig, PipelineMetrics m)
    {
        List<Probe8Ledger> ledgers = [.. rig.Producers.Select(p => p.Ledger), rig.Closer];
        Assert.Equal(ledgers.Sum(l => l.Calls), m.Offered);
        foreach (RejectReason reason in Enum.GetValues<RejectReason>().Where(r => r != RejectReason.None))
        {
            long told = ledgers.Sum(l => l.Told(reason));
            Assert.True(told == m.RejectedByReason.GetValueOrDefault(reason), $"{reason}: callers were told {told}, the engine counts {m.RejectedByReason.GetValueOrDefault(reason)}");
        }

        Assert.Equal(ledgers.Sum(l => l.Told(RejectReason.None)), m.Accepted + m.Dropped);
        foreach (IGrouping<string, StopProducer> source in rig.Producers.GroupBy(p => p.Source))
        {
            SourceMetrics[] s = [.. m.Sources.Where(x => x.Source == source.Key)];
            Assert.Equal(source.Sum(p => p.Ledger.Calls), s.Sum(x => x.Offered));
            Assert.Equal(source.Sum(p => p.Ledger.Calls - p.Ledger.Told(RejectReason.None)), s.Sum(x => x.Rejected));
            Assert.Equal(source.Sum(p => p.Ledger.Told(RejectReason.None)), s.Sum(x => x.Accepted + x.Dropped));
        }

        foreach (StopProducer p in rig.Producers)
        {
            Assert.Null(p.Failure);
            Assert.True(p.RefusedAfterClosed == 20, $"{p.Source}#{p.Index}: {p.RefusedAfterClosed} of 20 writes after WriterClosed refused as closed");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(64)]
    public async Task StopAsync_GracefulWhileWaitWritersWaitOnAFullShardWithDisposeAndDrainRacing_NothingAcceptedByAWaitWriterDropped(int batchSize)
    {
        StopRig rig = await StartRig(batchSize);
        MetricsPipeline pipeline = rig.Pipeline;
        try
        {
            using var snapshotsDone = new CancellationTokenSource();
            Task<int> snapshots = Probe8Ledger.SnapshotLoop(pipeline, snapshotsDone.Token);
            Task drain = Task.Run(() => pipeline.DrainAsync());
            rig.Stopping.Set();
            // On its own thread: StopAsync itself may hold its caller while the shards are full (see probe8 findings, F1).
            Task stop = Task.Factory.StartNew(() => pipeline.StopAsync(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

            // docs/event-time.md: a call under way when the stop comes is waited for and its points stay buffered, also a
            // batch it was waiting to hand to a full shard: every producer's waiting call returns while the sink still
            // holds its window.
            await UntilAllClosed(rig, stop);
            Assert.False(stop.IsCompleted, "the stop ended while the sink held a window (the scenario proves nothing then)");
            rig.Sink.Gates.OpenAll();
            await stop.Within("the graceful stop once the sink goes on");
            await drain.Within("DrainAsync racing the stop");
            foreach (Thread t in rig.Threads)
            {
                Assert.True(t.Join(Signals.Bound), $"producer {t.Name} did not end");
            }

            await snapshotsDone.CancelAsync();
            Assert.True(await snapshots.Within("the snapshot loop") > 0);
            rig.SharedWait.Dispose();
            rig.SharedDrop.Dispose();

            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            AssertCallersMatchCounters(rig, m);
            Assert.Equal(0, m.Late);
            foreach (IGrouping<string, StopProducer> source in rig.Producers.Where(p => p.Mode == BackpressureMode.Wait).GroupBy(p => p.Source))
            {
                long dropped = m.Sources.Where(x => x.Source == source.Key).Sum(x => x.Dropped);
                Assert.True(dropped == 0, $"{source.Key} (Wait) dropped {dropped} in a graceful stop ({string.Join(", ", m.DroppedByReason.Where(d => d.Value > 0))})");
            }

            var exact = rig.Producers.Where(p => p.Mode == BackpressureMode.Wait).Select(p => p.Metric).Append("p8_stop_closer").ToHashSet();
            List<string> problems = Probe8Ledger.Compare(
                [.. rig.Producers.Select(p => p.Ledger), rig.Closer],
                rig.Sink.Rows,
                key => exact.Contains(key[..key.IndexOf('{', StringComparison.Ordinal)]));
            Assert.True(problems.Count == 0, string.Join("\n", problems.Take(20)));
        }
        finally
        {
            rig.Sink.Gates.OpenAll();
            await EventTimeBlackBoxTests.StopBounded(pipeline);
        }
    }

    /// <summary>
    /// docs/event-time.md: "A Wait writer held back by a full shard is not idle while it waits ..., and the batch it
    /// hands over when room comes is stamped with that moment ...: otherwise a stall longer than SourceIdleTimeout could
    /// leave the source looking silent at the first tick after it, and its next in-order points late."
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Write_WaitWriterHeldOnAFullShardLongerThanTheIdleTimeout_NextInOrderPointsNotLate(bool shared)
    {
        FakeTimeProvider time = Scenario.Clock(Scenario.T0 + 3_500);
        MetricsPipelineOptions options = EventTimeBlackBoxTests.Options(time, shards: 1, windowMs: 1000, latenessMs: 0, idleMs: 2_000);
        options.BatchSize = 4;
        options.ShardQueueBatches = 2;
        options.ShutdownTimeout = TimeSpan.FromDays(1);
        var sink = new GatedSink();
        var pipeline = new MetricsPipeline(options, [new SinkRegistration(sink, new SinkOptions { QueueCapacity = 1, AttemptTimeout = Timeout.InfiniteTimeSpan })]);
        SharedPointWriter? sharedWriter = null;
        try
        {
            pipeline.Start();
            SeriesId closerSeries = pipeline.Registry.GetOrAdd("p8_idle_closer");
            using (PointWriter closer = pipeline.CreateWriter("closer", BackpressureMode.Wait))
            {
                for (int w = 0; w < 4; w++)
                {
                    Assert.Equal(RejectReason.None, closer.Write(closerSeries, w, Scenario.T0 + (w * 1000L) + 1));
                    closer.Flush();
                }
            }

            // Windows 0..2 closed: the sink holds 0, its queue 1, the shard waits with 2.
            await Signals.Until(() => sink.Calls == 1 && pipeline.GetMetrics().Sinks[0].QueueDepth == 1, "the sink holds a window and its queue another");
            sharedWriter = shared ? pipeline.CreateSharedWriter("held", BackpressureMode.Wait) : null;
            PointWriter? own = shared ? null : pipeline.CreateWriter("held", BackpressureMode.Wait);
            SeriesId series = pipeline.Registry.GetOrAdd("p8_idle_held");
            long told = 0, written = 0, ts = Scenario.T0 + 3_600;
            long inCallSince = 0;
            var firstPhaseDone = new ManualResetEventSlim();
            var secondPhase = new ManualResetEventSlim();
            Exception? failure = null;
            var thread = new Thread(() =>
            {
                try
                {
                    RejectReason W(double v, long t) => own is not null ? own.Write(series, v, t) : sharedWriter!.Write(series, v, t);

                    // Until one call waits: 2 batches fill the queue, the third waits for room.
                    for (int i = 0; i < 40; i++)
                    {
                        Interlocked.Exchange(ref inCallSince, Stopwatch.GetTimestamp());
                        RejectReason r = W(1, ts);
                        Interlocked.Exchange(ref inCallSince, 0);
                        written++;
                        told += r == RejectReason.None ? 1 : 0;
                        ts += 5;
                    }

                    firstPhaseDone.Set();
                    Assert.True(secondPhase.Wait(Signals.Bound), "the second phase did not start");

                    // In order after the stall, crossing windows; the clock moves in steps shorter than the idle timeout.
                    for (int i = 0; i < 400; i++)
                    {
                        RejectReason r = W(2, ts);
                        written++;
                        told += r == RejectReason.None ? 1 : 0;
                        ts += 5;
                        if (i % 50 == 49)
                        {
                            if (own is not null)
                            {
                                own.Flush();
                            }
                            else
                            {
                                sharedWriter!.Flush();
                            }

                            time.Advance(TimeSpan.FromMilliseconds(500));
                        }
                    }

                    own?.Dispose();
                }
                catch (Exception e)
                {
                    failure = e;
                    firstPhaseDone.Set();
                }
            })
            { IsBackground = true };
            thread.Start();
            await Signals.Until(() => failure is not null || Stopwatch.GetElapsedTime(Interlocked.Read(ref inCallSince)) > TimeSpan.FromMilliseconds(300) && Interlocked.Read(ref inCallSince) != 0, "the held writer waiting inside a call on the full shard");
            Assert.Null(failure);

            // The stall: 5 s of the engine's clock (ticks every second) with the writer waiting, idle timeout 2 s.
            for (int step = 0; step < 10; step++)
            {
                time.Advance(TimeSpan.FromMilliseconds(500));
                await Task.Delay(5);
            }

            Assert.NotEqual(0L, Interlocked.Read(ref inCallSince)); // still waiting: the shard is full behind the sink
            sink.Gates.OpenAll();
            Assert.True(firstPhaseDone.Wait(Signals.Bound), "the held writer's call did not return once the sink went on");
            secondPhase.Set();
            Assert.True(thread.Join(Signals.Bound * 2), "the held writer did not finish");
            Assert.Null(failure);
            sharedWriter?.Dispose();
            await pipeline.DrainAsync().Within("the drain");
            PipelineMetrics before = pipeline.GetMetrics();
            BlackBoxAccounting.AssertIdentities(before);
            Assert.True(before.Late == 0, $"late {before.Late} of the held writer's {told} in-order points ({string.Join(", ", before.LateByMetric)})");
            await pipeline.StopAsync().Within("the graceful stop");
            PipelineMetrics m = pipeline.GetMetrics();
            BlackBoxAccounting.AssertStoppedGracefully(m);
            Assert.Equal(440, written);
            Assert.Equal(440, told);
            Assert.Equal(0, m.Late);
            Assert.Equal(told, sink.Rows.Where(r => r.Metric == "p8_idle_held").Sum(r => r.Count));
        }
        finally
        {
            sink.Gates.OpenAll();
            await EventTimeBlackBoxTests.StopBounded(pipeline);
        }
    }
}
