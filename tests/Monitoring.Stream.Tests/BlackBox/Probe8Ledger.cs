using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>Count, sum, min and max of a set of points; integer values keep the sum exact.</summary>
internal sealed class Probe8Aggregate
{
    public long Count;
    public double Sum;
    public double Min = double.PositiveInfinity;
    public double Max = double.NegativeInfinity;

    public void Add(double value)
    {
        Count++;
        Sum += value;
        Min = Math.Min(Min, value);
        Max = Math.Max(Max, value);
    }

    public void Add(long count, double sum, double min, double max)
    {
        Count += count;
        Sum += sum;
        Min = Math.Min(Min, min);
        Max = Math.Max(Max, max);
    }

    public override string ToString() => $"count {Count}, sum {Sum:R}, min {Min:R}, max {Max:R}";
}

/// <summary>
/// What callers were told was accepted (<see cref="RejectReason.None"/>), by series key and window start (or
/// <see cref="AnyWindow"/> for points written without a timestamp), and what each call returned.
/// </summary>
internal sealed class Probe8Ledger
{
    /// <summary>The window of a point the engine stamped itself (unknown to the caller).</summary>
    public const long AnyWindow = long.MinValue;

    private readonly long[] _told = new long[64];

    public Dictionary<(string Key, long Window), Probe8Aggregate> Accepted { get; } = [];

    public long Calls => _told.Sum();

    public long Told(RejectReason reason) => _told[(int)reason];

    public void Record(RejectReason reason, string key, long window, double value)
    {
        _told[(int)reason]++;
        if (reason == RejectReason.None)
        {
            if (!Accepted.TryGetValue((key, window), out Probe8Aggregate? a))
            {
                Accepted[(key, window)] = a = new Probe8Aggregate();
            }

            a.Add(value);
        }
    }

    public static string Key(string metric, params Label[] labels) => metric + LabelSet.Create(labels);

    /// <summary>Emitted rows of the sink, summed per series key and window (a window may be emitted more than once).</summary>
    public static Dictionary<(string Key, long Window), Probe8Aggregate> Emitted(IEnumerable<WindowRow> rows)
    {
        var emitted = new Dictionary<(string, long), Probe8Aggregate>();
        foreach (WindowRow r in rows)
        {
            if (!emitted.TryGetValue((r.Key, r.WindowStartMs), out Probe8Aggregate? a))
            {
                emitted[(r.Key, r.WindowStartMs)] = a = new Probe8Aggregate();
            }

            a.Add(r.Count, r.Sum, r.Min, r.Max);
        }

        return emitted;
    }

    /// <summary>
    /// Compares what callers were told was accepted with what the sink received. For <paramref name="exactKeys"/>
    /// (sources that may lose nothing), count, sum, min and max per series and window must be equal; for the others
    /// the sink may hold less (dropped batches), never more, and never a value outside what was accepted.
    /// Every emitted series and window must be one some caller was told was accepted.
    /// </summary>
    public static List<string> Compare(IEnumerable<Probe8Ledger> ledgers, IEnumerable<WindowRow> rows, Func<string, bool> exactKeys)
    {
        var told = new Dictionary<(string Key, long Window), Probe8Aggregate>();
        foreach (Probe8Ledger l in ledgers)
        {
            foreach (((string Key, long Window) k, Probe8Aggregate a) in l.Accepted)
            {
                if (!told.TryGetValue(k, out Probe8Aggregate? t))
                {
                    told[k] = t = new Probe8Aggregate();
                }

                t.Add(a.Count, a.Sum, a.Min, a.Max);
            }
        }

        Dictionary<(string Key, long Window), Probe8Aggregate> emitted = Emitted(rows);
        var untimedKeys = told.Keys.Where(k => k.Window == AnyWindow).Select(k => k.Key).ToHashSet();
        var emittedUntimed = new Dictionary<(string, long), Probe8Aggregate>();
        foreach (((string Key, long Window) k, Probe8Aggregate a) in emitted)
        {
            if (untimedKeys.Contains(k.Key))
            {
                if (!emittedUntimed.TryGetValue((k.Key, AnyWindow), out Probe8Aggregate? u))
                {
                    emittedUntimed[(k.Key, AnyWindow)] = u = new Probe8Aggregate();
                }

                u.Add(a.Count, a.Sum, a.Min, a.Max);
            }
        }

        foreach (string key in untimedKeys)
        {
            emitted.Keys.Where(k => k.Key == key).ToList().ForEach(k => emitted.Remove(k));
        }

        foreach (KeyValuePair<(string, long), Probe8Aggregate> u in emittedUntimed)
        {
            emitted[u.Key] = u.Value;
        }

        var problems = new List<string>();
        foreach (((string Key, long Window) k, Probe8Aggregate e) in emitted)
        {
            if (!told.TryGetValue(k, out Probe8Aggregate? t))
            {
                problems.Add($"emitted {k.Key} window {k.Window} ({e}) that no caller was told was accepted");
                continue;
            }

            bool exact = exactKeys(k.Key);
            bool ok = exact
                ? e.Count == t.Count && e.Sum == t.Sum && e.Min == t.Min && e.Max == t.Max
                : e.Count <= t.Count && e.Min >= t.Min && e.Max <= t.Max;
            if (!ok)
            {
                problems.Add($"{k.Key} window {k.Window}: emitted {e}, callers told accepted {t}");
            }
        }

        foreach (((string Key, long Window) k, Probe8Aggregate t) in told)
        {
            if (exactKeys(k.Key) && !emitted.ContainsKey(k))
            {
                problems.Add($"{k.Key} window {k.Window}: callers told accepted {t}, nothing emitted");
            }
        }

        return problems;
    }

    /// <summary>
    /// What a snapshot taken while points move must show (docs/event-time.md, "Accounting"): no remainder negative, no
    /// source with more outcomes than offers.
    /// </summary>
    public static void AssertRemaindersAreCounts(PipelineMetrics m)
    {
        Assert.True(m.Pending >= 0, $"pending {m.Pending} < 0");
        Assert.True(m.Queued >= 0, $"queued {m.Queued} < 0");
        Assert.True(m.OpenWindowPoints >= 0, $"open {m.OpenWindowPoints} < 0");
        foreach (SourceMetrics s in m.Sources)
        {
            Assert.True(s.Offered >= s.Accepted + s.Rejected + s.Dropped, $"source {s.Source}: offered {s.Offered} < accepted {s.Accepted} + rejected {s.Rejected} + dropped {s.Dropped}");
        }
    }

    /// <summary>
    /// Takes snapshots until <paramref name="done"/> is cancelled: every one must hold the remainders, and the totals
    /// (offered, emitted, late, per-source offered) never go back between two snapshots. Returns the snapshots taken.
    /// </summary>
    public static Task<int> SnapshotLoop(MetricsPipeline pipeline, CancellationToken done) => Task.Run(() =>
    {
        int n = 0;
        PipelineMetrics? previous = null;
        while (!done.IsCancellationRequested)
        {
            PipelineMetrics m = pipeline.GetMetrics();
            AssertRemaindersAreCounts(m);
            if (previous is not null)
            {
                Assert.True(m.Offered >= previous.Offered, $"offered went back {previous.Offered} -> {m.Offered}");
                Assert.True(m.EmittedPoints >= previous.EmittedPoints, $"emitted went back {previous.EmittedPoints} -> {m.EmittedPoints}");
                Assert.True(m.Late >= previous.Late, $"late went back {previous.Late} -> {m.Late}");
                foreach (SourceMetrics s in m.Sources)
                {
                    long before = previous.Sources.Where(p => p.Source == s.Source).Sum(p => p.Offered);
                    long now = m.Sources.Where(p => p.Source == s.Source).Sum(p => p.Offered);
                    Assert.True(now >= before, $"source {s.Source}: offered went back {before} -> {now}");
                }
            }

            previous = m;
            n++;
        }

        return n;
    });
}
