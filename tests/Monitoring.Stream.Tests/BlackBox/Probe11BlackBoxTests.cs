using System.Diagnostics;
using System.Globalization;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Store;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>Probe 11 helpers for the Arrow store: block counts, read-back of published files, shell commands.</summary>
internal static class Probe11Files
{
    private static readonly TimeSpan s_commandBound = TimeSpan.FromSeconds(30);

    /// <summary>Bytes allocated on disk for <paramref name="file"/> (<c>stat -c %b</c> × <c>%B</c>) and its length.</summary>
    public static (long Allocated, long Length) Space(string file)
    {
        string output = Run("stat", "-c", "%b %B %s", file);
        string[] parts = output.Trim().Split(' ');
        long blocks = long.Parse(parts[0], CultureInfo.InvariantCulture);
        long unit = long.Parse(parts[1], CultureInfo.InvariantCulture);
        long length = long.Parse(parts[2], CultureInfo.InvariantCulture);
        return (blocks * unit, length);
    }

    /// <summary>Fails unless <paramref name="file"/> holds no allocated block beyond its length rounded up to 4 KiB.</summary>
    public static void AssertNoBlocksBeyondLength(string file)
    {
        (long allocated, long length) = Space(file);
        long rounded = (length + 4095) / 4096 * 4096;
        Assert.True(allocated <= rounded, $"{Path.GetFileName(file)}: {allocated} bytes allocated for a length of {length} (rounded {rounded}): {allocated - rounded} reserved bytes kept past the end");
    }

    public static string Run(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(s_commandBound), $"{command} did not finish");
        Assert.True(process.ExitCode == 0, $"{command} {string.Join(' ', args)} failed (exit {process.ExitCode}): {error}");
        return output;
    }

    /// <summary>Every batch of every published file of <paramref name="folder"/>, read with the plain Arrow file reader.</summary>
    public static List<RecordBatch> ReadPublished(string folder)
    {
        var batches = new List<RecordBatch>();
        foreach (string file in Directory.GetFiles(folder, "*" + ArrowFileStore.Extension).Order(StringComparer.Ordinal))
        {
            using FileStream stream = File.OpenRead(file);
            using var reader = new ArrowFileReader(stream);
            int count = reader.RecordBatchCountAsync().AsTask().GetAwaiter().GetResult();
            for (int i = 0; i < count; i++)
            {
                batches.Add(reader.ReadRecordBatchAsync(i).AsTask().GetAwaiter().GetResult());
            }
        }

        return batches;
    }

    /// <summary>Row counts and points per series of batches, to compare what was acknowledged with what was read back.</summary>
    public static (long Rows, IReadOnlyDictionary<string, long> Points) Content(IEnumerable<RecordBatch> batches)
    {
        List<RecordBatch> list = [.. batches];
        return (list.Sum(b => (long)b.Length), WindowBatchFactory.PointsBySeries(list));
    }

    public static void AssertSameContent(IEnumerable<RecordBatch> expected, IEnumerable<RecordBatch> actual)
    {
        (long rows, IReadOnlyDictionary<string, long> points) = Content(expected);
        (long actualRows, IReadOnlyDictionary<string, long> actualPoints) = Content(actual);
        Assert.Equal(rows, actualRows);
        Assert.Equal(points.Count, actualPoints.Count);
        foreach ((string key, long n) in points)
        {
            Assert.True(actualPoints.TryGetValue(key, out long got) && got == n, $"{key}: {n} points acknowledged, {got} read back");
        }
    }
}

/// <summary>
/// Probe 11, the Arrow store's disk reservation (fallocate KEEP_SIZE before each batch, tail cut at publication or
/// cut-back): published files keep no blocks past their end, full disks, crashes with a reserved tail, tmpfs.
/// </summary>
public class Probe11ArrowStoreTests
{
    private static ArrowFileStore Open(string folder, long maxFileBytes = 64L << 20) =>
        new(new ArrowFileStoreOptions { Directory = folder, MaxFileBytes = maxFileBytes, MaxTotalBytes = 1L << 40, Retention = TimeSpan.FromDays(3650) });

    private static async Task WriteAllAndComplete(string folder, IReadOnlyList<WindowBatch> batches, long maxFileBytes)
    {
        var store = Open(folder, maxFileBytes);
        await using (store)
        {
            long bytes = 0;
            for (int i = 0; i < batches.Count; i++)
            {
                await store.WriteAsync(batches[i], CancellationToken.None).AsTask().Within($"write {i}");
                Assert.Equal(i + 1, store.BatchesWritten);
                Assert.True(store.BytesWritten > bytes, $"BytesWritten did not grow with batch {i}");
                bytes = store.BytesWritten;
            }

            await store.CompleteAsync(CancellationToken.None).AsTask().Within("complete");
            Assert.Equal(0, store.WriteErrors);
            Assert.Equal(0, store.PendingRecoveries);
            Assert.Equal(store.PublishedFiles().Count, store.FilesPublished);
        }

        Assert.Empty(Directory.GetFiles(folder, "*" + ArrowFileStore.PartialExtension));
        string[] published = Directory.GetFiles(folder, "*" + ArrowFileStore.Extension);
        Assert.NotEmpty(published);
        Assert.All(published, Probe11Files.AssertNoBlocksBeyondLength);
        Probe11Files.AssertSameContent(batches.Select(b => b.RecordBatch), Probe11Files.ReadPublished(folder));
        Assert.Equal(batches.Count, Probe11Files.ReadPublished(folder).Count);
    }

    [Fact]
    public async Task Probe11_ManySmallBatches_RotatedEveryFewBatches_PublishedFilesKeepNoReservedBlocks()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 60, series: 3);
        using var dir = new TempDirectory();
        // ~1.5 KB a batch: a file is published every few batches, and the last at completion.
        await WriteAllAndComplete(dir.Path, batches, maxFileBytes: 6_000);
        Assert.True(Directory.GetFiles(dir.Path, "*" + ArrowFileStore.Extension).Length >= 5, "rotation did not happen");
    }

    [Fact]
    public async Task Probe11_VeryLargeBatches_50kSeries_PublishedAndReadBackWithNoReservedBlocks()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 2, series: 50_000);
        Assert.Equal(2, batches.Count);
        Assert.All(batches, b => Assert.Equal(50_000, b.RecordBatch.Length));
        using var dir = new TempDirectory();
        // One file per batch (each is far above the limit) and a mix of one small batch in between.
        IReadOnlyList<WindowBatch> small = await WindowBatchFactory.CreateAsync(windows: 1, series: 2);
        await WriteAllAndComplete(dir.Path, [batches[0], small[0], batches[1]], maxFileBytes: 1L << 20);
    }

    [Fact]
    public async Task Probe11_TmpfsFolder_SmallAndLargeBatches_PublishedWithNoReservedBlocks()
    {
        IReadOnlyList<WindowBatch> small = await WindowBatchFactory.CreateAsync(windows: 20, series: 4);
        IReadOnlyList<WindowBatch> large = await WindowBatchFactory.CreateAsync(windows: 1, series: 20_000);
        using TmpfsMount disk = TmpfsMount.Create(64L << 20);
        string folder = Path.Combine(disk.Path, "windows");
        await WriteAllAndComplete(folder, [.. small.Take(10), large[0], .. small.Skip(10)], maxFileBytes: 8_000);
    }

    [Fact]
    public async Task Probe11_DiskFull_CountersConsistent_CutBackKeepsNoReservedBlocks_RecoversWhenSpaceReturns()
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 6, series: 300);
        using TmpfsMount disk = TmpfsMount.Create(3L << 20);
        string folder = Path.Combine(disk.Path, "windows");
        string filler = Path.Combine(disk.Path, "filler");
        var acknowledged = new List<WindowBatch>();
        var store = Open(folder);
        await using (store)
        {
            await store.WriteAsync(batches[0], CancellationToken.None);
            await store.WriteAsync(batches[1], CancellationToken.None);
            acknowledged.AddRange(batches.Take(2));
            long bytes = store.BytesWritten;

            Assert.True(TmpfsMount.Fill(filler) > 0);
            for (int attempt = 0; attempt < 3; attempt++)
            {
                await Assert.ThrowsAsync<StoreDiskFullException>(() => store.WriteAsync(batches[2], CancellationToken.None).AsTask());
                Assert.Equal(attempt + 1, store.DiskFullErrors);
                Assert.Equal(store.DiskFullErrors, store.WriteErrors);
                Assert.Equal(2, store.BatchesWritten);
                Assert.Equal(bytes, store.BytesWritten);

                // Whatever was cut back (a closed partial file waiting for space) keeps no reserved tail.
                foreach (string partial in Directory.GetFiles(folder, "*" + ArrowFileStore.PartialExtension))
                {
                    Probe11Files.AssertNoBlocksBeyondLength(partial);
                }

                foreach (string published in Directory.GetFiles(folder, "*" + ArrowFileStore.Extension))
                {
                    Probe11Files.AssertNoBlocksBeyondLength(published);
                }

                TmpfsMount.Fill(filler); // take whatever the cut freed
            }

            Assert.Equal(1, store.PendingRecoveries + store.PartialFilesRecovered);

            File.Delete(filler);
            for (int i = 2; i < 6; i++)
            {
                await store.WriteAsync(batches[i], CancellationToken.None).AsTask().Within($"write {i} after space returned");
                acknowledged.Add(batches[i]);
            }

            Assert.Equal(6, store.BatchesWritten);
            Assert.Equal(3, store.WriteErrors);
            Assert.Equal(3, store.DiskFullErrors);
            Assert.Equal(0, store.PendingRecoveries);
            Assert.Equal(1, store.PartialFilesRecovered);
            Assert.Equal(2, store.BatchesRecovered);
            await store.CompleteAsync(CancellationToken.None);
        }

        Assert.Empty(Directory.GetFiles(folder, "*" + ArrowFileStore.PartialExtension));
        string[] files = Directory.GetFiles(folder, "*" + ArrowFileStore.Extension);
        Assert.Equal(2, files.Length);
        Assert.All(files, Probe11Files.AssertNoBlocksBeyondLength);
        List<RecordBatch> read = Probe11Files.ReadPublished(folder);
        Assert.Equal(6, read.Count);
        Probe11Files.AssertSameContent(acknowledged.Select(b => b.RecordBatch), read);
    }

    [Fact]
    public async Task Probe11_NearlyFullDisk_SpaceForTheBatchButLittleMore_WriteSucceeds()
    {
        // The reservation is a hint: a batch that fits in the free space must be written even if the reservation
        // (an estimate of the batch's bytes) asks for more than is free.
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: 3, series: 400);
        using TmpfsMount disk = TmpfsMount.Create(4L << 20);
        string folder = Path.Combine(disk.Path, "windows");
        string filler = Path.Combine(disk.Path, "filler");
        var store = Open(folder);
        await using (store)
        {
            await store.WriteAsync(batches[0], CancellationToken.None);
            long one = store.BytesWritten;
            Assert.True(one > 8_192, $"a batch of {one} bytes is too small for this probe");
            long filled = TmpfsMount.Fill(filler);
            Assert.True(filled > 0);

            // Free exactly the batch's bytes plus two pages.
            long free = ((one + 4095) / 4096 * 4096) + 8192;
            using (var stream = new FileStream(filler, FileMode.Open, FileAccess.Write))
            {
                stream.SetLength(filled - free);
            }

            await store.WriteAsync(batches[1], CancellationToken.None).AsTask().Within("a write that fits the free space");
            Assert.Equal(2, store.BatchesWritten);
            Assert.Equal(0, store.WriteErrors);

            File.Delete(filler);
            await store.CompleteAsync(CancellationToken.None);
        }

        string[] files = Directory.GetFiles(folder, "*" + ArrowFileStore.Extension);
        Assert.All(files, Probe11Files.AssertNoBlocksBeyondLength);
        Probe11Files.AssertSameContent(batches.Take(2).Select(b => b.RecordBatch), Probe11Files.ReadPublished(folder));
    }

    /// <summary>
    /// The state a SIGKILL leaves mid-write: a partial file with acknowledged batches, a torn batch, and blocks
    /// reserved (KEEP_SIZE) past its end. Built from the store's own bytes: a copy of its partial file after
    /// <c>whole</c> batches, half of the next batch's bytes appended, and a reservation past the end as the
    /// killed writer's fallocate would have left. The next opening must publish exactly the whole batches.
    /// </summary>
    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 5)]
    [InlineData(true, 3)]
    public async Task Probe11_KilledMidWrite_PartialFileWithReservedTail_RecoveredWithEveryAcknowledgedBatch(bool onTmpfs, int whole)
    {
        IReadOnlyList<WindowBatch> batches = await WindowBatchFactory.CreateAsync(windows: whole + 1, series: 150);
        using var scratch = new TempDirectory();
        using TmpfsMount? disk = onTmpfs ? TmpfsMount.Create(16L << 20) : null;
        string source = Path.Combine(scratch.Path, "source");
        string target = Path.Combine(disk?.Path ?? scratch.Path, "windows");
        Directory.CreateDirectory(target);
        string name;
        byte[] acknowledgedBytes;
        byte[] withNext;
        var store = Open(source);
        await using (store)
        {
            for (int i = 0; i < whole; i++)
            {
                await store.WriteAsync(batches[i], CancellationToken.None);
            }

            string partial = Assert.Single(Directory.GetFiles(source, "*" + ArrowFileStore.PartialExtension));
            name = Path.GetFileName(partial);
            acknowledgedBytes = ReadShared(partial);
            await store.WriteAsync(batches[whole], CancellationToken.None);
            withNext = ReadShared(partial);
        }

        Assert.True(withNext.Length > acknowledgedBytes.Length);
        Assert.True(withNext.AsSpan(0, acknowledgedBytes.Length).SequenceEqual(acknowledgedBytes), "the partial file was rewritten, not appended to");
        int torn = acknowledgedBytes.Length + ((withNext.Length - acknowledgedBytes.Length) / 2);
        string crashed = Path.Combine(target, name);
        await File.WriteAllBytesAsync(crashed, withNext.AsMemory(0, torn).ToArray());
        Probe11Files.Run("fallocate", "-n", "-o", torn.ToString(CultureInfo.InvariantCulture), "-l", (4 << 20).ToString(CultureInfo.InvariantCulture), crashed);
        (long allocated, long length) = Probe11Files.Space(crashed);
        Assert.Equal(torn, length);
        Assert.True(allocated >= length + (4 << 20) - 4096, $"the reservation past the end did not take ({allocated} bytes for {length})");

        var reopened = Open(target);
        await using (reopened)
        {
            Assert.Equal(1, reopened.PartialFilesRemoved);
            Assert.Equal(1, reopened.PartialFilesRecovered);
            Assert.Equal(whole, reopened.BatchesRecovered);
            Assert.Equal(0, reopened.WriteErrors);
            Assert.Equal(0, reopened.PendingRecoveries);
            Assert.Equal(0, reopened.FilesSetAside);
        }

        Assert.Empty(Directory.GetFiles(target, "*" + ArrowFileStore.PartialExtension));
        string recovered = Assert.Single(Directory.GetFiles(target, "*" + ArrowFileStore.Extension));
        Probe11Files.AssertNoBlocksBeyondLength(recovered);
        List<RecordBatch> read = Probe11Files.ReadPublished(target);
        Assert.Equal(whole, read.Count);
        Probe11Files.AssertSameContent(batches.Take(whole).Select(b => b.RecordBatch), read);
    }

    private static byte[] ReadShared(string path)
    {
        // cp takes no lock: the store holds its open file exclusively.
        string copy = path + ".probe-copy";
        Probe11Files.Run("cp", path, copy);
        byte[] bytes = File.ReadAllBytes(copy);
        File.Delete(copy);
        return bytes;
    }
}

/// <summary>
/// Probe 11, the shard's in-place path: whatever the mix of values, series, windows and writers, the emitted
/// statistics equal the values added one by one to a <see cref="RunningMoments"/> and a
/// <see cref="DdSketch"/> per series and window.
/// </summary>
public class Probe11ShardExactTests
{
    private const long T0 = 1_800_000_000_000; // a multiple of 10 s
    private const string Metric = "probe11_values";

    private static readonly double s_minIndexable = new DdSketch().MinIndexableValue;

    /// <summary>Values that must be aggregated, each at an edge of a path.</summary>
    private static readonly double[] s_edges =
    [
        double.Epsilon, -double.Epsilon, 3 * double.Epsilon, 1e-310, -1e-315, 2.2250738585072014E-308,
        Math.BitDecrement(2.2250738585072014E-308), s_minIndexable, Math.BitDecrement(s_minIndexable),
        Math.BitIncrement(s_minIndexable), -s_minIndexable, -Math.BitDecrement(s_minIndexable), 0.0, -0.0,
        RunningMoments.MaxMagnitude, -RunningMoments.MaxMagnitude,
        Math.BitDecrement(RunningMoments.MaxMagnitude), 1e-300, 1e300 / 1e210,
    ];

    /// <summary>Values that must be refused, with their reasons.</summary>
    private static readonly (double Value, RejectReason Reason)[] s_refused =
    [
        (double.NaN, RejectReason.NotANumber), (-double.NaN, RejectReason.NotANumber),
        (BitConverter.Int64BitsToDouble(0x7FF0_0000_0000_0001), RejectReason.NotANumber),
        (double.PositiveInfinity, RejectReason.Infinity), (double.NegativeInfinity, RejectReason.Infinity),
        (Math.BitIncrement(RunningMoments.MaxMagnitude), RejectReason.ValueOutOfRange),
        (-Math.BitIncrement(RunningMoments.MaxMagnitude), RejectReason.ValueOutOfRange),
        (double.MaxValue, RejectReason.ValueOutOfRange),
    ];

    private sealed class Expected
    {
        private readonly Dictionary<(long Window, string Series), (RunningMoments Moments, DdSketch Sketch)> _states = [];

        public int Count => _states.Count;

        public void Add(string series, double value, long ts)
        {
            long window = ts - (ts % 10_000);
            if (!_states.TryGetValue((window, series), out var state))
            {
                state = (default, new DdSketch());
            }

            state.Moments.Add(value, ts);
            state.Sketch.Add(value);
            _states[(window, series)] = state;
        }

        public (RunningMoments Moments, DdSketch Sketch) this[long window, string series] => _states[(window, series)];

        public bool Contains(long window, string series) => _states.ContainsKey((window, series));
    }

    private static Label[] Labels(string series) => [new Label("s", series)];

    private static string SeriesOf(WindowRow row) => row.Labels.GetValue("s")!;

    private static bool Same(double a, double b) => BitConverter.DoubleToInt64Bits(a) == BitConverter.DoubleToInt64Bits(b);

    /// <summary>Bit-for-bit comparison of every row with the values added one by one.</summary>
    private static void AssertExact(Expected expected, IReadOnlyList<WindowRow> rows)
    {
        Assert.Equal(expected.Count, rows.Count);
        Assert.Equal(rows.Count, rows.Select(r => (r.WindowStartMs, SeriesOf(r))).Distinct().Count());
        var buffer = new byte[1 << 18];
        var other = new byte[1 << 18];
        var failures = new List<string>();
        foreach (WindowRow row in rows)
        {
            string series = SeriesOf(row);
            string at = $"series {series}, window +{row.WindowStartMs - T0} ms";
            if (!expected.Contains(row.WindowStartMs, series))
            {
                failures.Add($"{at}: a row for values never written");
                continue;
            }

            (RunningMoments m, DdSketch sketch) = expected[row.WindowStartMs, series];
            if (m.Count != row.Count)
            {
                failures.Add($"{at}: count {row.Count}, expected {m.Count}");
            }

            foreach ((string name, double got, double want) in new[]
            {
                ("sum", row.Sum, m.Sum), ("min", row.Min, m.Min), ("max", row.Max, m.Max), ("mean", row.Mean, m.Mean),
                ("m2", row.M2, m.M2), ("last", row.Last, m.Last),
            })
            {
                if (!Same(got, want))
                {
                    failures.Add($"{at}: {name} {got:R}, expected {want:R}");
                }
            }

            if (row.Sketch is null)
            {
                failures.Add($"{at}: no sketch");
                continue;
            }

            int length = sketch.Serialize(buffer);
            int rowLength = row.Sketch.Serialize(other);
            if (!buffer.AsSpan(0, length).SequenceEqual(other.AsSpan(0, rowLength)))
            {
                failures.Add($"{at}: sketch differs (count {row.Sketch.Count}/{sketch.Count}, zero count {row.Sketch.ZeroCount}/{sketch.ZeroCount}, min {row.Sketch.Min:R}/{sketch.Min:R}, max {row.Sketch.Max:R}/{sketch.Max:R})");
            }

            double[] qs = [0.5, 0.9, 0.95, 0.99];
            for (int i = 0; i < qs.Length; i++)
            {
                double want = sketch.GetQuantile(qs[i]);
                if (row.Quantiles[i] is not double got || !Same(got, want))
                {
                    failures.Add($"{at}: p{qs[i] * 100} {row.Quantiles[i]:R}, expected {want:R}");
                }
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} differences, first ones:\n" + string.Join('\n', failures.Take(15)));
    }

    private static (MetricsPipeline Pipeline, CollectingSink Sink) Create(int shards, long nowMs)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(nowMs));
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(WindowScenario.Options(time, shards), [sink]);
        pipeline.Start();
        return (pipeline, sink);
    }

    /// <summary>A timestamp in one of the two windows that stay open together (the second within the lateness).</summary>
    private static long Stamp(Random random) => random.Next(8) == 0 ? T0 + 10_000 + random.Next(5_000) : T0 + random.Next(10_000);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Probe11_EdgeValuesInRuns_RefusedValuesCounted_EqualsValuesAddedOneByOne(int shards)
    {
        (MetricsPipeline pipeline, CollectingSink sink) = Create(shards, T0 + 600_000);
        var expected = new Expected();
        var random = new Random(1101);
        var refused = new Dictionary<RejectReason, long>();
        long accepted = 0;
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("probe11-edges");

            void Write(string series, double value, long ts)
            {
                RejectReason reason = writer.Write(Metric, Labels(series), value, ts);
                Assert.True(reason == RejectReason.None, $"{value:R} refused ({reason})");
                expected.Add(series, value, ts);
                accepted++;
            }

            // Series whose first points are negative (the negative store and min set first), then positive.
            for (int k = 0; k < 4; k++)
            {
                for (int i = 0; i < 300; i++)
                {
                    Write($"neg-first-{k}", i < 100 ? -Math.Exp(random.NextDouble() * 3) : Math.Exp(random.NextDouble() * 3), T0 + i);
                }
            }

            // Series that start with -0.0, or with +0.0, then the other zero, then edges.
            foreach (double first in (double[])[-0.0, 0.0])
            {
                string series = first == 0 && double.IsNegative(first) ? "zero-neg" : "zero-pos";
                for (int i = 0; i < 50; i++)
                {
                    Write(series, i % 2 == 0 ? first : -first, T0 + 1 + i);
                }

                foreach (double edge in s_edges)
                {
                    Write(series, edge, T0 + 100);
                }
            }

            // Series whose only values are one edge, repeated in runs (so each edge runs through the in-place loop
            // once its series has a state in the window).
            for (int e = 0; e < s_edges.Length; e++)
            {
                for (int i = 0; i < 400; i++)
                {
                    Write($"only-{e}", s_edges[e], T0 + (i % 10_000));
                }
            }

            // Runs of points of one series: usual values, edges and refused values mixed.
            for (int run = 0; run < 4_000; run++)
            {
                string series = "mix-" + random.Next(60).ToString(CultureInfo.InvariantCulture);
                long ts = Stamp(random);
                int length = 1 + random.Next(40);
                for (int i = 0; i < length; i++)
                {
                    int pick = random.Next(100);
                    if (pick < 3)
                    {
                        (double bad, RejectReason reason) = s_refused[random.Next(s_refused.Length)];
                        Assert.Equal(reason, writer.Write(Metric, Labels(series), bad, ts));
                        refused[reason] = refused.GetValueOrDefault(reason) + 1;
                        continue;
                    }

                    double value = pick < 20 ? s_edges[random.Next(s_edges.Length)] : Math.Exp(random.NextDouble() * 3) * (pick < 25 ? -1 : 1);
                    Write(series, value, random.Next(4) == 0 ? Stamp(random) : ts);
                }
            }

            writer.Flush();
            await pipeline.DrainAsync().Within("drain");
            await pipeline.StopAsync().Within("stop");
            PipelineMetrics metrics = pipeline.GetMetrics();
            Assert.Equal(accepted, metrics.Accepted);
            Assert.Equal(accepted, metrics.EmittedPoints);
            Assert.Equal(0, metrics.Late);
            foreach ((RejectReason reason, long n) in refused)
            {
                Assert.True(metrics.RejectedByReason.GetValueOrDefault(reason) == n, $"{reason}: {metrics.RejectedByReason.GetValueOrDefault(reason)} counted, {n} refused");
            }

            Assert.Equal(refused.Values.Sum(), metrics.Rejected);
            Assert.True(refused.Count == 3, "the stream did not refuse every kind of value");
        }

        AssertExact(expected, sink.Rows);
    }

    [Theory]
    [InlineData(1_000)]
    [InlineData(6_000)]
    public async Task Probe11_ManySeriesOnOneShard_BothPaths_EqualsValuesAddedOneByOne(int seriesCount)
    {
        (MetricsPipeline pipeline, CollectingSink sink) = Create(1, T0 + 600_000);
        var expected = new Expected();
        var random = new Random(seriesCount);
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("probe11-many");
            for (int i = 0; i < 150_000; i++)
            {
                // Runs: half the points repeat the previous series.
                string series = "many-" + (i % 2 == 0 ? random.Next(seriesCount) : (i / 2) % seriesCount).ToString(CultureInfo.InvariantCulture);
                int pick = random.Next(100);
                double value = pick switch
                {
                    < 5 => s_edges[random.Next(s_edges.Length)],
                    < 10 => -Math.Exp(random.NextDouble() * 4),
                    < 12 => 0,
                    _ => Math.Exp(random.NextDouble() * 3),
                };
                long ts = Stamp(random);
                Assert.Equal(RejectReason.None, writer.Write(Metric, Labels(series), value, ts));
                expected.Add(series, value, ts);
            }

            writer.Flush();
            await pipeline.DrainAsync().Within("drain");
            await pipeline.StopAsync().Within("stop");
            Assert.Equal(150_000, pipeline.GetMetrics().EmittedPoints);
        }

        Assert.True(sink.Rows.Select(SeriesOf).Distinct().Count() == seriesCount, "not every series was written");
        AssertExact(expected, sink.Rows);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Probe11_SeriesReclaimedAndRecreated_StaleIdsRefused_EqualsValuesAddedOneByOne(int shards)
    {
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        MetricsPipelineOptions options = ReclaimScenario.Options(time, TimeSpan.FromSeconds(2));
        options.ShardCount = shards;
        var pipeline = new MetricsPipeline(options, [sink]);
        pipeline.Start();
        var expected = new Expected();
        var random = new Random(1111 + shards);
        long stale = 0;
        await using (pipeline)
        {
            using PointWriter writer = pipeline.CreateWriter("probe11-reclaim");
            var held = new Dictionary<string, SeriesId>();
            for (int round = 0; round < 3; round++)
            {
                long now = time.GetUtcNow().ToUnixTimeMilliseconds();
                for (int k = 0; k < 20; k++)
                {
                    string series = "r-" + k.ToString(CultureInfo.InvariantCulture);

                    // A handle held from an earlier round names a reclaimed series: its points are refused as stale.
                    if (held.TryGetValue(series, out SeriesId old))
                    {
                        for (int i = 0; i < 5; i++)
                        {
                            if (writer.Write(old, 1e6 + i, now + i) == RejectReason.None)
                            {
                                stale++;
                            }
                        }
                    }

                    SeriesId id = pipeline.Registry.GetOrAdd(Metric, Labels(series));
                    held[series] = id;
                    int length = 50 + random.Next(200);
                    for (int i = 0; i < length; i++)
                    {
                        // Negative first in odd rounds, then positive; edges mixed in.
                        double value = random.Next(10) == 0 ? s_edges[random.Next(s_edges.Length)]
                            : Math.Exp(random.NextDouble() * 2) * (round % 2 == 1 && i < length / 3 ? -1 : 1);
                        long ts = now + (i % 5_000);
                        Assert.Equal(RejectReason.None, i % 3 == 0 ? writer.Write(Metric, Labels(series), value, ts) : writer.Write(id, value, ts));
                        expected.Add(series, value, ts);
                    }
                }

                writer.Flush();
                await pipeline.DrainAsync().Within("drain");
                long reclaimed = pipeline.GetMetrics().SeriesReclaimed;
                await ReclaimScenario.TickUntil(
                    pipeline, time, () => pipeline.GetMetrics().SeriesReclaimed >= reclaimed + 20 && pipeline.GetMetrics().SeriesRetired >= pipeline.GetMetrics().SeriesReclaimed,
                    60, $"round {round}'s series reclaimed and retired");
            }

            // Each stale handle once more, after the last reclaim.
            foreach (SeriesId old in held.Values)
            {
                if (writer.Write(old, -1e6, time.GetUtcNow().ToUnixTimeMilliseconds()) == RejectReason.None)
                {
                    stale++;
                }
            }

            writer.Flush();
            await pipeline.DrainAsync().Within("drain");
            await pipeline.StopAsync().Within("stop");
            PipelineMetrics m = pipeline.GetMetrics();
            Assert.True(stale > 0, "no stale point was accepted at the writer: the stale path was not reached");
            Assert.Equal(stale, m.StalePoints);
            Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.StalePoints);
            Assert.Equal(0, m.Late);
            Assert.True(m.SeriesReclaimed >= 60, $"{m.SeriesReclaimed} reclaimed");
        }

        Assert.DoesNotContain(sink.Rows, r => Math.Abs(r.Max) == 1e6 || Math.Abs(r.Min) == 1e6 || r.Max > 1e5 && r.Max < 2e6);
        AssertExact(expected, sink.Rows);
    }

    [Fact]
    public async Task Probe11_FourWritersOnFourThreads_TwoShards_OrderInsensitiveFiguresEqual()
    {
        (MetricsPipeline pipeline, CollectingSink sink) = Create(2, T0 + 600_000);
        const int Threads = 4;
        var written = new List<(string Series, double Value, long Ts)>[Threads];
        await using (pipeline)
        {
            using var start = new Barrier(Threads);
            Task[] tasks = [.. Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(
                () =>
                {
                    var mine = new List<(string, double, long)>();
                    var random = new Random(7_000 + t);
                    using PointWriter writer = pipeline.CreateWriter("probe11-thread-" + t.ToString(CultureInfo.InvariantCulture));
                    start.SignalAndWait();
                    for (int run = 0; run < 2_000; run++)
                    {
                        string series = "c-" + random.Next(150).ToString(CultureInfo.InvariantCulture);
                        long ts = Stamp(random);
                        int length = 1 + random.Next(25);
                        for (int i = 0; i < length; i++)
                        {
                            int pick = random.Next(100);
                            double value = pick switch
                            {
                                < 3 => double.Epsilon * (1 + random.Next(1000)),
                                < 6 => s_minIndexable,
                                < 9 => 0.0,
                                < 20 => -Math.Exp(random.NextDouble() * 3),
                                _ => Math.Exp(random.NextDouble() * 3),
                            };
                            Assert.Equal(RejectReason.None, writer.Write(Metric, Labels(series), value, ts));
                            mine.Add((series, value, ts));
                        }
                    }

                    writer.Flush();
                    written[t] = mine;
                },
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
            await Task.WhenAll(tasks).Within("the writers");
            await pipeline.DrainAsync().Within("drain");
            await pipeline.StopAsync().Within("stop");
            Assert.Equal(written.Sum(w => (long)w.Count), pipeline.GetMetrics().EmittedPoints);
        }

        var expected = new Expected();
        var absolute = new Dictionary<(long, string), double>();
        foreach ((string series, double value, long ts) in written.SelectMany(w => w))
        {
            expected.Add(series, value, ts);
            var key = (ts - (ts % 10_000), series);
            absolute[key] = absolute.GetValueOrDefault(key) + Math.Abs(value);
        }

        IReadOnlyList<WindowRow> rows = sink.Rows;
        Assert.Equal(expected.Count, rows.Count);
        var buffer = new byte[1 << 16];
        var other = new byte[1 << 16];
        foreach (WindowRow row in rows)
        {
            string series = SeriesOf(row);
            (RunningMoments m, DdSketch sketch) = expected[row.WindowStartMs, series];
            string at = $"series {series}, window +{row.WindowStartMs - T0} ms";
            Assert.True(m.Count == row.Count, $"{at}: count {row.Count}, expected {m.Count}");
            Assert.True(m.Min == row.Min && m.Max == row.Max, $"{at}: min/max {row.Min:R}/{row.Max:R}, expected {m.Min:R}/{m.Max:R}");
            double tolerance = 1e-12 * absolute[(row.WindowStartMs, series)];
            Assert.True(Math.Abs(m.Sum - row.Sum) <= tolerance, $"{at}: sum {row.Sum:R}, expected {m.Sum:R}");
            Assert.NotNull(row.Sketch);
            Assert.Equal(sketch.Count, row.Sketch.Count);
            Assert.Equal(sketch.ZeroCount, row.Sketch.ZeroCount);
            int length = sketch.Serialize(buffer);
            int rowLength = row.Sketch.Serialize(other);
            Assert.True(buffer.AsSpan(0, length).SequenceEqual(other.AsSpan(0, rowLength)), $"{at}: sketch bins differ");
        }
    }
}
