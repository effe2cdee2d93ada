using System.Buffers;
using CsCheck;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Statistics;

public class DdSketchTests
{
    private static readonly double[] s_quantiles = [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1];

    private static DdSketch Build(ReadOnlySpan<double> values, double alpha = DdSketch.DefaultRelativeAccuracy, int maxBins = DdSketch.DefaultMaxBinsPerSign)
    {
        var sketch = new DdSketch(alpha, maxBins);
        foreach (double v in values)
        {
            sketch.Add(v);
        }

        return sketch;
    }

    /// <summary>The exact value at rank floor(q (n - 1)) of the sorted data, the rank the sketch answers for.</summary>
    private static double ExactQuantile(double[] sorted, double q) => sorted[(int)Math.Floor(q * (sorted.Length - 1))];

    private static void AssertWithinAlpha(double[] values, DdSketch sketch, IEnumerable<double> quantiles, string name)
    {
        double[] sorted = (double[])values.Clone();
        Array.Sort(sorted);
        double alpha = sketch.RelativeAccuracy;
        foreach (double q in quantiles)
        {
            double exact = ExactQuantile(sorted, q);
            double estimate = sketch.GetQuantile(q);
            if (Math.Abs(exact) < sketch.MinIndexableValue)
            {
                Assert.Equal(0, estimate);
                continue;
            }

            // The guarantee is alpha; 1e-12 relative covers the rounding of log at a bin boundary,
            // where both neighbouring bins are exactly alpha away.
            Assert.True(Math.Abs(estimate - exact) <= (alpha * Math.Abs(exact) * (1 + 1e-9)) + 1e-300,
                $"{name} q={q}: exact {exact:R}, estimate {estimate:R}, relative error {Math.Abs(estimate - exact) / Math.Abs(exact):E4}");
        }
    }

    // Theory rows carry only a name: xunit serializes every row at discovery, and 100,000-value
    // arrays made that take minutes and gigabytes. The data is generated inside the test.
    private static double[] Distribution(string name) => name switch
    {
        "pareto-1.1" => Support.Distributions.Pareto(100_000, seed: 12),
        "lognormal-9-decades" => Support.Distributions.LogNormalNineDecades(100_000, seed: 13),
        "mixed-signs-zeros" => Support.Distributions.MixedSignsWithZeros(100_000, seed: 14),
        "negatives" => Support.Distributions.Negatives(100_000, seed: 15),
        "large-mean-tiny-spread" => Support.Distributions.LargeMeanTinySpread(50_000, seed: 16),
        "all-equal" => Enumerable.Repeat(0.25, 1000).ToArray(),
        "single" => [3.5],
        "zeros" => new double[100],
        "extremes" => [double.MaxValue, -double.MaxValue, double.Epsilon * 1e10, 1e-300, -1e300, 0, 1],
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown distribution"),
    };

    [Theory]
    [InlineData("pareto-1.1")]
    [InlineData("lognormal-9-decades")]
    [InlineData("mixed-signs-zeros")]
    [InlineData("negatives")]
    [InlineData("large-mean-tiny-spread")]
    [InlineData("all-equal")]
    [InlineData("single")]
    [InlineData("zeros")]
    [InlineData("extremes")]
    public void GetQuantile_AdversarialData_WithinAlphaOfExactRank(string name)
    {
        double[] values = Distribution(name);
        // The guarantee holds while no bins collapse; the collapse tests below cover the default limit.
        DdSketch sketch = Build(values, maxBins: DdSketch.MaxMaxBins);

        AssertWithinAlpha(values, sketch, s_quantiles, name);
        Assert.Equal((ulong)values.Length, sketch.Count);
        Assert.Equal(values.Min(), sketch.Min);
        Assert.Equal(values.Max(), sketch.Max);
    }

    [Theory]
    [InlineData(0.001)]
    [InlineData(0.02)]
    [InlineData(0.05)]
    public void GetQuantile_OtherAccuracies_WithinAlpha(double alpha)
    {
        double[] values = Support.Distributions.LogNormalNineDecades(20_000, seed: 17);

        DdSketch sketch = Build(values, alpha, DdSketch.MaxMaxBins);

        AssertWithinAlpha(values, sketch, s_quantiles, $"alpha={alpha}");
    }

    private static Gen<double[]> MixedValues =>
        Gen.Frequency(
            (5, Gen.Double[1e-9, 1e12]),
            (2, Gen.Double[-1e6, -1e-6]),
            (1, Gen.Const(0.0)),
            (2, Gen.Int[-1000, 1000].Select(i => i * 0.5))).Array[1, 300];

    [Fact]
    public void GetQuantile_RandomData_EveryQuantileWithinAlpha()
    {
        Gen.Select(MixedValues, Gen.Double[0, 1].Array[1, 20])
            .Sample((values, quantiles) =>
            {
                // Values span 21 decades, more than the default 2,048 bins hold (17.8 decades at alpha 0.01).
                DdSketch sketch = Build(values, maxBins: 4096);
                AssertWithinAlpha(values, sketch, quantiles, "random");
            }, iter: 1000);
    }

    [Fact]
    public void Merge_RandomSplit_IdenticalToUnsplitSketch()
    {
        Gen.Select(MixedValues, Gen.Int[0, 300])
            .Sample((values, cut) =>
            {
                int split = Math.Min(cut, values.Length);
                DdSketch whole = Build(values);
                DdSketch right = Build(values.AsSpan(split));
                right.Merge(Build(values.AsSpan(0, split)));

                Assert.True(whole.ContentEquals(right));
                foreach (double q in s_quantiles)
                {
                    Assert.Equal(whole.GetQuantile(q), right.GetQuantile(q));
                }
            }, iter: 1000);
    }

    [Fact]
    public void Serialize_RandomSketches_RoundTripIsIdentity()
    {
        Gen.Select(MixedValues, Gen.Double[0.001, 0.1], Gen.Int[16, 256])
            .Sample((values, alpha, maxBins) =>
            {
                DdSketch sketch = Build(values, alpha, maxBins);
                byte[] bytes = sketch.ToArray();

                DdSketch read = DdSketch.Deserialize(bytes);

                Assert.True(sketch.ContentEquals(read));
                Assert.Equal(bytes, read.ToArray());
                Assert.Equal(bytes.Length, sketch.GetSerializedSize());
                Assert.Equal(sketch.GetQuantile(0.99), read.GetQuantile(0.99));
            }, iter: 1000);
    }

    [Fact]
    public void Serialize_EmptySketch_RoundTrips()
    {
        var sketch = new DdSketch();

        DdSketch read = DdSketch.Deserialize(sketch.ToArray());

        Assert.True(read.IsEmpty);
        Assert.True(sketch.ContentEquals(read));
        Assert.True(double.IsNaN(read.GetQuantile(0.5)));
    }

    [Fact]
    public void Serialize_BufferWriter_WritesSameBytes()
    {
        DdSketch sketch = Build(Support.Distributions.Pareto(1000, seed: 3));
        var writer = new ArrayBufferWriter<byte>();

        sketch.Serialize(writer);

        Assert.Equal(sketch.ToArray(), writer.WrittenSpan.ToArray());
    }

    [Fact]
    public void Serialize_LatencyLikeWindow_IsCompact()
    {
        // 10,000 latencies between 1 ms and 1 s: a few hundred bins at one or two bytes each.
        double[] values = Support.Distributions.LogNormalNineDecades(10_000, seed: 21).Select(v => 1 + (v % 1000)).ToArray();

        int size = Build(values).GetSerializedSize();

        Assert.InRange(size, 30, 1200);
    }

    [Fact]
    public void Deserialize_Corrupt_ThrowsFormatExceptionWithReason()
    {
        byte[] good = Build([1.0, 2.0, -3.0, 0.0]).ToArray();

        Assert.Contains("version", Assert.Throws<FormatException>(() => DdSketch.Deserialize([9, .. good[1..]])).Message);
        Assert.Contains("flags", Assert.Throws<FormatException>(() => DdSketch.Deserialize([good[0], 0x80, .. good[2..]])).Message);
        Assert.Contains("unexpected bytes", Assert.Throws<FormatException>(() => DdSketch.Deserialize([.. good, 0])).Message);
        Assert.Throws<FormatException>(() => DdSketch.Deserialize([]));
        for (int cut = 0; cut < good.Length; cut++)
        {
            Assert.Throws<FormatException>(() => DdSketch.Deserialize(good.AsSpan(0, cut)));
        }
    }

    [Fact]
    public void Deserialize_RandomBytes_NeverThrowsAnythingButFormatException()
    {
        byte[] good = Build(Support.Distributions.MixedSignsWithZeros(200, seed: 4)).ToArray();
        Gen.Select(Gen.Int[0, good.Length - 1], Gen.Byte).Sample((position, value) =>
        {
            byte[] bytes = (byte[])good.Clone();
            bytes[position] = value;
            try
            {
                DdSketch read = DdSketch.Deserialize(bytes);
                _ = read.GetQuantile(0.5);
            }
            catch (FormatException)
            {
            }
        }, iter: 3000);
    }

    /// <summary>A version-1 sketch payload with the given header fields and raw store bytes.</summary>
    private static byte[] Payload(ulong count, ulong zeroCount, double min, double max, byte[] stores, byte flags = 0, ulong maxBins = DdSketch.DefaultMaxBinsPerSign, double alpha = 0.01)
    {
        var bytes = new List<byte> { DdSketch.SerializationVersion, flags };
        bytes.AddRange(BitConverter.GetBytes(alpha));
        AddVarUInt(bytes, maxBins);
        AddVarUInt(bytes, count);
        AddVarUInt(bytes, zeroCount);
        if (count > 0)
        {
            bytes.AddRange(BitConverter.GetBytes(min));
            bytes.AddRange(BitConverter.GetBytes(max));
        }

        bytes.AddRange(stores);
        return [.. bytes];

        static void AddVarUInt(List<byte> bytes, ulong value)
        {
            for (; value >= 0x80; value >>= 7)
            {
                bytes.Add((byte)(value | 0x80));
            }

            bytes.Add((byte)value);
        }
    }

    [Fact]
    public void Deserialize_CountsThatWrapPast2Pow64_ThrowsFormatException()
    {
        // One positive bin of count 2 (dense: length 1, first index 0, count 2), empty negative store.
        byte[] oneBinOfTwo = [1, 0, 2, 0];

        // Count 1 with zero count 2^64 - 1: bins plus zeros wrap to 1 (accepted before as Count 1).
        byte[] zeroCountWraps = Payload(1, ulong.MaxValue, 0, 1, oneBinOfTwo);
        Assert.Contains("zero count", Assert.Throws<FormatException>(() => DdSketch.Deserialize(zeroCountWraps)).Message);

        // Count 2^64 - 1 with zero count 2^64 - 2 and 2 in bins: 2^64 in all, wraps to 0.
        byte[] sumWraps = Payload(ulong.MaxValue, ulong.MaxValue - 1, 0, 1, oneBinOfTwo);
        Assert.Contains("does not match", Assert.Throws<FormatException>(() => DdSketch.Deserialize(sumWraps)).Message);

        // The same counts without the wrap are read: 2^64 - 1 = (2^64 - 3) + 2.
        Assert.Equal(ulong.MaxValue, DdSketch.Deserialize(Payload(ulong.MaxValue, ulong.MaxValue - 2, 0, 1, oneBinOfTwo)).Count);
    }

    [Fact]
    public void Merge_CountsPast2Pow64_ThrowsOverflowAndLeavesTargetUnchanged()
    {
        // 2^63 zeros and one value 1 in a bin, twice: 2^64 + 2 values together.
        byte[] half = Payload((1UL << 63) + 1, 1UL << 63, 0, 1, [1, 0, 1, 0]);
        DdSketch target = DdSketch.Deserialize(half);
        DdSketch source = DdSketch.Deserialize(half);

        var error = Assert.Throws<OverflowException>(() => target.Merge(source));

        Assert.Contains("2^64", error.Message);
        Assert.Equal(half, target.ToArray());
        Assert.Equal((1UL << 63) + 1, target.Count);
    }

    [Fact]
    public void Add_AtMaximumCount_ThrowsOverflowAndChangesNothing()
    {
        byte[] full = Payload(ulong.MaxValue, ulong.MaxValue - 1, 0, 1, [1, 0, 1, 0]);
        DdSketch sketch = DdSketch.Deserialize(full);

        Assert.Throws<OverflowException>(() => sketch.Add(5));

        Assert.Equal(full, sketch.ToArray());
    }

    /// <summary>The documented cap on what reading a payload allocates (docs/statistics.md).</summary>
    private static long ReadAllocationCap(ReadOnlySpan<byte> payload)
    {
        // The declared bin limit (varint after version, flags and alpha); refused payloads allocate no bins.
        ulong maxBins = 0;
        int shift = 0;
        for (int i = 10; i < payload.Length && i < 13; i++, shift += 7)
        {
            maxBins |= (ulong)(payload[i] & 0x7F) << shift;
            if (payload[i] < 0x80)
            {
                break;
            }
        }

        long binsPerSign = (long)Math.Min(maxBins, DdSketch.MaxMaxBins);
        if (payload.Length > 1 && (payload[1] & DdSketch.SparseStoresFlag) == 0)
        {
            binsPerSign = Math.Min(binsPerSign, payload.Length);
        }

        return DdSketchReadOverheadBytes + (2 * 4 * binsPerSign);
    }

    // The sketch object and two array headers, with room to spare; the docs state 512 bytes.
    private const long DdSketchReadOverheadBytes = 512;

    // A thrown FormatException allocates itself, its message and its stack trace.
    private const long ExceptionAllowanceBytes = 16 * 1024;

    [Fact]
    public void Deserialize_LargeValidSketch_AllocatesOnlyItsBins()
    {
        // 400,000 bins a sign at alpha 1e-5 (one value per bin), dense: a ~0.8 MB payload, whose
        // read allocated a growing array per sign, many times its bins, before.
        var sketch = new DdSketch(DdSketch.MinRelativeAccuracy, DdSketch.MaxMaxBins);
        double step = Math.Log((1 + DdSketch.MinRelativeAccuracy) / (1 - DdSketch.MinRelativeAccuracy));
        for (int i = 0; i < 400_000; i++)
        {
            double value = Math.Exp((i - 0.5) * step);
            sketch.Add(value);
            sketch.Add(-value);
        }

        byte[] bytes = sketch.ToArray();
        Assert.True(bytes.Length > 800_000, $"{bytes.Length} bytes");
        DdSketch.Deserialize(bytes);

        long before = GC.GetAllocatedBytesForCurrentThread();
        DdSketch read = DdSketch.Deserialize(bytes);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(read.ContentEquals(sketch));
        long bins = (long)(read.Count - read.ZeroCount);
        Assert.True(allocated <= DdSketchReadOverheadBytes + (4 * bins), $"{allocated} bytes allocated to read {bins} bins");
        Assert.True(allocated <= ReadAllocationCap(bytes));
    }

    [Fact]
    public void Deserialize_WideSparseStore_AllocatesOneArrayOfItsSpan()
    {
        // Two values 2^20 - 1 bins apart at the largest limit: 2^20 bins from a 40-byte payload, allocated
        // once, with counters as narrow as the counts allow (one byte each here: 1 MiB, not 4).
        byte[] stores = [2, 0, 1, 0xFF, 0xFF, 0x3F, 1, 0];
        byte[] payload = Payload(2, 0, 1, 2, stores, DdSketch.SparseStoresFlag, DdSketch.MaxMaxBins);
        DdSketch.Deserialize(payload);

        long before = GC.GetAllocatedBytesForCurrentThread();
        DdSketch read = DdSketch.Deserialize(payload);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(2UL, read.Count);
        Assert.InRange(allocated, (long)DdSketch.MaxMaxBins, DdSketchReadOverheadBytes + (long)DdSketch.MaxMaxBins);

        // A reader that accepts only the default limit refuses it before allocating any bin.
        Assert.Contains("exceeds", Assert.Throws<FormatException>(() => DdSketch.Deserialize(payload, DdSketch.DefaultMaxBinsPerSign)).Message);
    }

    private static readonly Gen<byte[]> s_hostilePayloads = Gen.Frequency(
        // Valid sketches of either layout with a few bytes overwritten, cut short or extended.
        (3, Gen.Select(MixedValues, Gen.Int[16, 4096], Gen.Int[0, 1000].Array[1, 4], Gen.Byte.Array[1, 4], Gen.Int[-4, 4])
            .Select((values, maxBins, positions, replacements, resize) =>
            {
                byte[] bytes = Build(values, maxBins: maxBins).ToArray();
                for (int i = 0; i < positions.Length && i < replacements.Length; i++)
                {
                    bytes[positions[i] % bytes.Length] = replacements[i];
                }

                return resize < 0 ? bytes[..Math.Max(0, bytes.Length + resize)] : [.. bytes, .. new byte[resize]];
            })),
        // Well-formed headers with any counts, limits up to the largest, then random store bytes:
        // huge store lengths and gaps, counts near 2^64, truncations.
        (3, Gen.Select(Gen.ULong, Gen.ULong, Gen.OneOf(Gen.Const(16UL), Gen.Const(2048UL), Gen.Const((ulong)DdSketch.MaxMaxBins), Gen.ULong[16, 1 << 21]), Gen.Bool, Gen.Byte.Array[0, 48])
            .Select((count, zeroCount, maxBins, sparse, tail) =>
                Payload(count >> (int)(count % 64), zeroCount >> (int)(zeroCount % 64), -1, 1, tail, sparse ? DdSketch.SparseStoresFlag : (byte)0, maxBins))),
        // Anything at all.
        (1, Gen.Byte.Array[0, 64]));

    [Fact]
    public void Deserialize_HostilePayloads_OnlyFormatExceptionAndAllocationWithinCap()
    {
        s_hostilePayloads.Sample(payload =>
        {
            bool threw = false;
            DdSketch? read = null;
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                read = DdSketch.Deserialize(payload);
            }
            catch (FormatException)
            {
                threw = true;
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            long cap = ReadAllocationCap(payload) + (threw ? ExceptionAllowanceBytes : 0);
            Assert.True(allocated <= cap, $"{allocated} bytes allocated reading {payload.Length} bytes; cap {cap}");

            if (read is not null)
            {
                // What was accepted is a consistent sketch: it answers, and it writes and reads back.
                _ = read.GetQuantile(0.5);
                Assert.True(DdSketch.Deserialize(read.ToArray()).ContentEquals(read));
            }
        }, iter: 5000);
    }

    [Fact]
    public void Add_BeyondBinLimit_CollapsesLowestAndKeepsUpperQuantilesAccurate()
    {
        const int maxBins = 64;
        double[] values = Support.Distributions.LogNormalNineDecades(50_000, seed: 22);

        DdSketch sketch = Build(values, maxBins: maxBins);

        // Nine decades at alpha 0.01 need ~1,000 bins; 64 cover the top ~1.3 decades only.
        Assert.True(sketch.GetSerializedSize() < 64 * 5 + 64);
        double[] sorted = [.. values.Order()];
        double boundary = Math.Pow((1 + 0.01) / (1 - 0.01), Math.Ceiling(Math.Log(sorted[^1]) / Math.Log((1 + 0.01) / (1 - 0.01))) - maxBins + 1);
        double[] upper = s_quantiles.Where(q => ExactQuantile(sorted, q) > boundary).ToArray();
        Assert.NotEmpty(upper);
        AssertWithinAlpha(values, sketch, upper, "collapsed");
        Assert.True(sketch.GetQuantile(0.001) <= boundary * 1.02, "collapsed low ranks answer at most the lowest kept bin");
    }

    [Fact]
    public void Add_AtBinLimit_CollapsesInPlaceAndAllocatesNothing()
    {
        // Real values over six decades beside 1e-15 noise: 21 decades, more than the 17.8 that the
        // default 2,048 bins hold, so every noise value lands below the kept window. The negative side
        // mirrors it: magnitudes 1e-3..1 beside -1e20 outliers, beyond its kept window.
        var random = new Random(31);
        double[] real = [.. Enumerable.Range(0, 4096).Select(_ => Math.Pow(10, 6 * random.NextDouble()))];
        var sketch = new DdSketch();
        const int Calls = 20_000;
        long bytes = AllocationProbe.MeasuredBytes(() =>
        {
            for (int i = 0; i < Calls / 4; i++)
            {
                sketch.Add(real[i % real.Length]);
                sketch.Add(1e-15 * (1 + (i % 7)));
                sketch.Add(-real[i % real.Length] * 1e-6);
                sketch.Add(-1e20 * (1 + (i % 5)));
            }
        });

        Assert.True(bytes < Calls, $"{bytes} bytes allocated over {Calls} adds at the bin limit");
        Assert.Equal((ulong)(2 * Calls), sketch.Count);

        // Quantiles outside the collapsed ends keep the guarantee: ranks among the small negatives
        // (30 %, 50 %) and among the real values (90 %, 99 %, max); the loop ran twice (warm-up).
        double[] once = [.. Enumerable.Range(0, Calls / 4).SelectMany(i => new[]
        {
            real[i % real.Length], 1e-15 * (1 + (i % 7)), -real[i % real.Length] * 1e-6, -1e20 * (1 + (i % 5)),
        })];
        AssertWithinAlpha([.. once, .. once], sketch, [0.3, 0.5, 0.9, 0.99, 1.0], "at the limit");
    }

    [Fact]
    public void Add_CollapsingInAnyOrder_SameBinsAsSortedOrder()
    {
        // Small limits and values over 21 decades: every order folds and moves bins differently in
        // place (new maxima shift the kept window, values beyond it fold), yet the result is the clamp
        // of every value's bin to the final window, whatever the order.
        Gen.Select(MixedValues, Gen.Int[16, 64])
            .Sample((values, maxBins) =>
            {
                DdSketch given = Build(values, maxBins: maxBins);
                DdSketch ascending = Build([.. values.Order()], maxBins: maxBins);
                DdSketch descending = Build([.. values.OrderDescending()], maxBins: maxBins);

                Assert.True(given.ContentEquals(ascending), "given order vs ascending");
                Assert.True(given.ContentEquals(descending), "given order vs descending");
            }, iter: 1000);
    }

    [Fact]
    public void Merge_Collapsed_IndependentOfOrder()
    {
        const int maxBins = 32;
        double[] values = Support.Distributions.MixedSignsWithZeros(20_000, seed: 23);
        DdSketch whole = Build(values, maxBins: maxBins);

        DdSketch merged = Build(values.AsSpan(15_000), maxBins: maxBins);
        merged.Merge(Build(values.AsSpan(0, 5_000), maxBins: maxBins));
        merged.Merge(Build(values.AsSpan(5_000, 10_000), maxBins: maxBins));

        Assert.True(whole.ContentEquals(merged));
    }

    [Fact]
    public void Merge_DifferentParameters_Throws()
    {
        var a = new DdSketch(0.01);
        var b = new DdSketch(0.02);

        Assert.Throws<ArgumentException>(() => a.Merge(b));
        Assert.Throws<ArgumentException>(() => a.Merge(new DdSketch(0.01, 100)));
    }

    [Fact]
    public void Constructor_OutOfRangeParameters_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DdSketch(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DdSketch(0.9));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DdSketch(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DdSketch(0.01, 8));
    }

    [Fact]
    public void GetQuantiles_InvalidArguments_Throw()
    {
        DdSketch sketch = Build([1.0]);

        Assert.Throws<ArgumentOutOfRangeException>(() => sketch.GetQuantile(1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => sketch.GetQuantile(double.NaN));
        Assert.Throws<ArgumentException>(() => sketch.GetQuantiles([0.9, 0.5], new double[2]));
    }

    [Fact]
    public void GetQuantiles_OnePass_EqualsSeparateCalls()
    {
        DdSketch sketch = Build(Support.Distributions.MixedSignsWithZeros(10_000, seed: 24));
        double[] qs = [0.5, 0.9, 0.95, 0.99];
        var results = new double[4];

        sketch.GetQuantiles(qs, results);

        for (int i = 0; i < qs.Length; i++)
        {
            Assert.Equal(sketch.GetQuantile(qs[i]), results[i]);
        }
    }

    [Fact]
    public void GetQuantilesAndWriteSummary_ManyQuantiles_EqualSeparateCalls()
    {
        // More quantiles than the walker keeps on the stack, with the extremes at both ends.
        DdSketch sketch = Build(Support.Distributions.MixedSignsWithZeros(10_000, seed: 26));
        double[] qs = [.. Enumerable.Range(0, 101).Select(i => i / 100.0)];
        var results = new double[qs.Length];
        var summary = new double[qs.Length];

        sketch.GetQuantiles(qs, results);
        int written = sketch.WriteSummary(new byte[sketch.SummaryBound], qs, summary);

        for (int i = 0; i < qs.Length; i++)
        {
            Assert.Equal(sketch.GetQuantile(qs[i]), results[i]);
        }

        Assert.Equal(results, summary);
        Assert.Equal(sketch.GetSerializedSize(), written);
    }

    [Fact]
    public void Clear_ThenReuse_BehavesLikeNewAndAllocatesNothing()
    {
        DdSketch sketch = Build(Support.Distributions.Pareto(10_000, seed: 25));
        sketch.Clear();
        Assert.True(sketch.IsEmpty);
        Assert.True(double.IsNaN(sketch.GetQuantile(0.5)));

        const int Calls = 10_000;
        long bytes = AllocationProbe.MeasuredBytes(() =>
        {
            for (int i = 0; i < Calls; i++)
            {
                sketch.Add(1.5);
            }
        });

        Assert.True(bytes < Calls, $"{bytes} bytes allocated over {Calls} adds");
        Assert.True(Build(Enumerable.Repeat(1.5, 2 * Calls).ToArray()).ContentEquals(sketch));
    }

    [Fact]
    public void AddWithIndex_IndexFromAnotherSketchOfTheSameAccuracy_SameSketchAsAdd()
    {
        // A shard computes each point's bin index ahead with one sketch of its accuracy (the mapping) and
        // hands it to the series' own sketch: the result must be the sketch Add gives, bin for bin.
        Gen.Frequency(
                (6, Gen.Double[-1e12, 1e12]),
                (2, Gen.Double[1e-12, 1e-3]),
                (1, Gen.OneOfConst(0.0, -0.0, 1e-320, -1e-320, double.Epsilon, 2.2250738585072014E-308)),
                (1, Gen.Double.Unit))
            .Array[1, 300]
            .Select(Gen.OneOfConst(0.01, 0.005, 0.05))
            .Sample(((double[] Values, double Alpha) c) =>
            {
                var mapping = new DdSketch(c.Alpha, 64);
                var viaIndex = new DdSketch(c.Alpha, 64);
                var viaAdd = new DdSketch(c.Alpha, 64);
                foreach (double v in c.Values)
                {
                    viaIndex.AddWithIndex(v, mapping.MagnitudeIndexOf(v));
                    viaAdd.Add(v);
                }

                Assert.Equal(viaAdd.ToArray(), viaIndex.ToArray());
                Assert.Equal(viaAdd.Min, viaIndex.Min);
                Assert.Equal(viaAdd.Max, viaIndex.Max);
                Assert.True(mapping.IsEmpty);
            }, iter: 300);
    }

    [Fact]
    public void PrefetchBin_IndicesFarOutsideTheBins_NeitherThrowsNorChangesTheSketch()
    {
        // The hint reads no length (it would wait for the very line it fetches): an index outside the counters
        // only hints an address outside them, which must never fault or touch the sketch.
        var sketch = new DdSketch(0.01, 64);
        sketch.PrefetchBin(5.0, sketch.MagnitudeIndexOf(5.0));
        foreach (double v in new[] { 1e-9, 0.5, 5.0, 1e9 })
        {
            sketch.Add(v);
        }

        byte[] before = sketch.ToArray();
        foreach (int index in new[] { int.MinValue, -1_000_000, -1, 0, 1, 1_000_000, int.MaxValue })
        {
            sketch.PrefetchBin(5.0, index);
            sketch.PrefetchBin(-5.0, index);
        }

        Assert.Equal(before, sketch.ToArray());
        Assert.Equal(4UL, sketch.Count);
    }

    [Fact]
    public void Add_TinyMagnitudes_CountAsZero()
    {
        var sketch = new DdSketch();
        sketch.Add(1e-320);
        sketch.Add(-1e-320);
        sketch.Add(0.0);

        Assert.Equal(3UL, sketch.ZeroCount);
        Assert.Equal(0, sketch.GetQuantile(0.5));
    }

    private static readonly Gen<double[]> s_positiveOrZero =
        Gen.Frequency(
            (6, Gen.Double[1e-9, 1e12]),
            (1, Gen.Const(0.0)),
            (2, Gen.Int[1, 200].Select(i => i * 0.25))).Array[1, 400];

    [Fact]
    public void WriteSummary_EqualsSeparateQuantilesAndSerialization()
    {
        // The window writer's one-pass summary must answer exactly what GetQuantiles and Serialize do,
        // on the fused path (no negatives, with zeros, bins over 127) and on the general one.
        double[] quantiles = [0, 0.5, 0.9, 0.95, 0.99, 1];
        Gen.Select(Gen.Frequency((3, s_positiveOrZero), (1, MixedValues)), Gen.Int[1, 300], Gen.Double[0.001, 0.05])
            .Sample((values, repeat, alpha) =>
            {
                var sketch = new DdSketch(alpha);
                foreach (double v in values)
                {
                    sketch.Add(v);
                }

                // Push a few bins past one varint byte.
                for (int i = 0; i < repeat; i++)
                {
                    sketch.Add(values[i % values.Length]);
                }

                var expected = new double[quantiles.Length];
                sketch.GetQuantiles(quantiles, expected);
                byte[] expectedBytes = sketch.ToArray();

                var actual = new double[quantiles.Length];
                var bytes = new byte[sketch.SummaryBound];
                int written = sketch.WriteSummary(bytes, quantiles, actual);

                Assert.Equal(expected, actual);
                Assert.Equal(expectedBytes, bytes.AsSpan(0, written).ToArray());
            });
    }

    [Fact]
    public void WriteSummary_LatencyLikeWindowsOfReusedSketches_EqualsSeparateQuantilesAndSerialization()
    {
        // The one-byte-counter fast path: narrow latency-like windows (sparse and dense stores, counts
        // over 127, arrays shorter than 32 bins and of every length modulo 32), written by a sketch
        // cleared and refilled as window states are, sometimes after a window with negative values.
        double[] quantiles = [0, 0.5, 0.9, 0.95, 0.99, 1];
        Gen.Select(Gen.Int[1, 400], Gen.Double[0.1, 4], Gen.Int[16, 300], Gen.Int[0, 2], Gen.Int[0, 100_000])
            .Sample((points, spread, maxBins, previous, seed) =>
            {
                var random = new Random(seed);
                var sketch = new DdSketch(0.01, maxBins);
                if (previous == 1)
                {
                    sketch.Add(-3.5);
                    sketch.Add(0.25);
                }
                else if (previous == 2)
                {
                    for (int i = 0; i < 50; i++)
                    {
                        sketch.Add(0.001 * Math.Exp(random.NextDouble() * 9));
                    }
                }

                sketch.Clear();
                bool onlyZeros = seed % 10 == 0; // a reused array with no positive bin left
                for (int i = 0; i < points; i++)
                {
                    double v = 0.02 * Math.Exp(random.NextDouble() * spread);
                    sketch.Add(onlyZeros || i % 97 == 5 ? 0.0 : v);
                }

                var expected = new double[quantiles.Length];
                sketch.GetQuantiles(quantiles, expected);
                byte[] expectedBytes = sketch.ToArray();

                var actual = new double[quantiles.Length];
                var bytes = new byte[sketch.SummaryBound];
                int written = sketch.WriteSummary(bytes, quantiles, actual);

                Assert.Equal(expected, actual);
                Assert.Equal(expectedBytes, bytes.AsSpan(0, written).ToArray());
                Assert.True(DdSketch.Deserialize(bytes.AsSpan(0, written)).ContentEquals(sketch));
            }, iter: 2_000);
    }

    [Fact]
    public void WriteSummary_EmptySketch_NaNQuantilesAndValidBytes()
    {
        var sketch = new DdSketch();
        var results = new double[4];
        var bytes = new byte[sketch.SummaryBound];
        int written = sketch.WriteSummary(bytes, [0.5, 0.9, 0.95, 0.99], results);

        Assert.All(results, r => Assert.True(double.IsNaN(r)));
        Assert.True(DdSketch.Deserialize(bytes.AsSpan(0, written)).IsEmpty);
    }

    [Fact]
    public void Quantiles_BeyondTheSharedRepresentativeTable_StillWithinAlpha()
    {
        // Bins far from 1 (1e-200, 1e200) are computed rather than read from the shared table.
        double[] huge = [1e200, 2e200, 5e200, 1e201, 3e201];
        double[] tiny = [1e-200, 2e-200, 5e-200, -1e-200, -4e-200];
        AssertWithinAlpha(huge, Build(huge), [0.0, 0.25, 0.5, 0.75, 1.0], "huge");
        AssertWithinAlpha(tiny, Build(tiny), [0.0, 0.25, 0.5, 0.75, 1.0], "tiny");
    }

    [Fact]
    public void Serialize_ChoosesSparseStoresForFewValuesOverAWideRange_DenseOtherwise()
    {
        DdSketch sparse = Build([0.001, 0.5, 7, 300, 9000]);
        DdSketch dense = Build([.. Enumerable.Range(1, 1000).Select(i => 1 + (i * 0.001))]);

        byte[] sparseBytes = sparse.ToArray();
        byte[] denseBytes = dense.ToArray();

        Assert.Equal(DdSketch.SparseStoresFlag, sparseBytes[1]);
        Assert.Equal(0, denseBytes[1]);
        Assert.True(sparseBytes.Length < 60, $"{sparseBytes.Length} bytes for five values");
        Assert.True(DdSketch.Deserialize(sparseBytes).ContentEquals(sparse));
        Assert.True(DdSketch.Deserialize(denseBytes).ContentEquals(dense));
        Assert.Equal(sparseBytes.Length, sparse.GetSerializedSize());
    }

    [Fact]
    public void Deserialize_SparseStore_RefusesZeroGapZeroCountAndOverlongSpan()
    {
        // Header of an alpha-0.01 sketch with 2 values, then a sparse positive store.
        static byte[] Sketch(params byte[] positiveStore)
        {
            var header = new List<byte> { DdSketch.SerializationVersion, DdSketch.SparseStoresFlag };
            header.AddRange(BitConverter.GetBytes(0.01));
            header.AddRange([0x80, 0x10]); // maxBins 2048
            header.AddRange([2, 0]); // count 2, zeroCount 0
            header.AddRange(BitConverter.GetBytes(1.0));
            header.AddRange(BitConverter.GetBytes(2.0));
            header.AddRange(positiveStore);
            header.Add(0); // empty negative store
            return [.. header];
        }

        // Two occupied bins: first index 0 (zigzag 0), count 1, gap 35, count 1: valid.
        Assert.Equal(2UL, DdSketch.Deserialize(Sketch(2, 0, 1, 35, 1)).Count);
        Assert.Contains("gap", Assert.Throws<FormatException>(() => DdSketch.Deserialize(Sketch(2, 0, 1, 0, 1))).Message);
        Assert.Contains("count", Assert.Throws<FormatException>(() => DdSketch.Deserialize(Sketch(2, 0, 1, 35, 0))).Message);
        Assert.Contains("spans", Assert.Throws<FormatException>(() => DdSketch.Deserialize(Sketch(2, 0, 1, 0x80, 0x10, 1))).Message);
    }

    [Fact]
    public void MergeSerialized_RandomSketches_SameAsMergingTheDeserializedSketch()
    {
        // Small bin limits make both stores collapse; the target is non-empty half the time.
        Gen.Select(MixedValues, MixedValues, Gen.Int[16, 256])
            .Sample((targetValues, sourceValues, maxBins) =>
            {
                DdSketch source = Build(sourceValues, maxBins: maxBins);
                DdSketch expected = Build(targetValues, maxBins: maxBins);
                expected.Merge(DdSketch.Deserialize(source.ToArray()));
                DdSketch actual = Build(targetValues, maxBins: maxBins);

                actual.MergeSerialized(source.ToArray());

                Assert.True(expected.ContentEquals(actual));
                Assert.Equal(expected.ToArray(), actual.ToArray());
            }, iter: 1000);
    }

    [Fact]
    public void MergeSerialized_SparseAndDenseLayouts_EqualToMerge()
    {
        // Few values over nine decades are written sparse, many latencies dense.
        double[] sparse = [1e-3, 2.5, 7e5, -4, 0];
        double[] dense = Support.Distributions.LogNormalNineDecades(5_000, seed: 31);
        foreach (double[] values in new[] { sparse, dense })
        {
            DdSketch target = Build(Support.Distributions.MixedSignsWithZeros(300, seed: 32));
            DdSketch expected = Build(Support.Distributions.MixedSignsWithZeros(300, seed: 32));
            expected.Merge(Build(values));

            target.MergeSerialized(Build(values).ToArray());

            Assert.True(expected.ContentEquals(target));
        }
    }

    [Fact]
    public void MergeSerialized_CorruptOrTruncated_ThrowsFormatExceptionAndLeavesTargetUnchanged()
    {
        byte[] good = Build(Support.Distributions.MixedSignsWithZeros(200, seed: 4)).ToArray();
        DdSketch target = Build([1.0, 2.0, -3.0]);
        byte[] before = target.ToArray();

        for (int cut = 0; cut < good.Length; cut++)
        {
            Assert.Throws<FormatException>(() => target.MergeSerialized(good.AsSpan(0, cut)));
            Assert.Equal(before, target.ToArray());
        }

        Assert.Contains("unexpected bytes", Assert.Throws<FormatException>(() => target.MergeSerialized([.. good, 0])).Message);
        Gen.Select(Gen.Int[0, good.Length - 1], Gen.Byte).Sample((position, value) =>
        {
            byte[] bytes = (byte[])good.Clone();
            bytes[position] = value;
            DdSketch probe = Build([1.0, 2.0, -3.0]);
            try
            {
                probe.MergeSerialized(bytes);
            }
            catch (Exception e) when (e is FormatException or ArgumentException)
            {
                // Refused: nothing may have changed.
                Assert.Equal(before, probe.ToArray());
            }
        }, iter: 3000);
    }

    [Fact]
    public void MergeSerialized_DifferentParametersOrCountOverflow_ThrowsAndLeavesTargetUnchanged()
    {
        var a = new DdSketch(0.01);
        a.Add(1);
        byte[] before = a.ToArray();

        Assert.Throws<ArgumentException>(() => a.MergeSerialized(Build([1.0], alpha: 0.02).ToArray()));
        Assert.Throws<ArgumentException>(() => a.MergeSerialized(Build([1.0], maxBins: 100).ToArray()));
        Assert.Equal(before, a.ToArray());

        byte[] half = Payload((1UL << 63) + 1, 1UL << 63, 0, 1, [1, 0, 1, 0]);
        DdSketch target = DdSketch.Deserialize(half);
        Assert.Contains("2^64", Assert.Throws<OverflowException>(() => target.MergeSerialized(half)).Message);
        Assert.Equal(half, target.ToArray());
    }

    [Fact]
    public void MergeSerialized_IntoAGrownSketch_AllocatesNothing()
    {
        DdSketch target = Build(Support.Distributions.LogNormalNineDecades(10_000, seed: 33));
        byte[] window = Build(Support.Distributions.LogNormalNineDecades(50, seed: 34)).ToArray();
        target.MergeSerialized(window);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            target.MergeSerialized(window);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(10_000UL + (101 * 50), target.Count);
    }

    [Fact]
    public void Merge_CoveredBinsNearTheCountLimit_SaturateAndCountLikeOneByOne()
    {
        // Twenty dense bins (vector lanes and a scalar tail) at 2^32 - 2 each, merged with the same bins at 5
        // and at 1: the first merge passes the limit in every bin (4 over each), the second in none.
        static byte[] Dense(uint perBin, int bins)
        {
            var stores = new List<byte>();
            AddVarUInt(stores, (ulong)bins);
            stores.Add(0); // zigzag of first index 0
            for (int i = 0; i < bins; i++)
            {
                AddVarUInt(stores, perBin);
            }

            stores.Add(0); // empty negative store
            return Payload((ulong)perBin * (ulong)bins, 0, 1, 1.2, [.. stores]);
        }

        DdSketch target = DdSketch.Deserialize(Dense(uint.MaxValue - 2, 20));
        target.Merge(DdSketch.Deserialize(Dense(1, 20)));
        Assert.Equal(0UL, target.SaturatedCount);

        target.Merge(DdSketch.Deserialize(Dense(5, 20)));

        Assert.Equal(20UL * 4, target.SaturatedCount);
        Assert.Equal(20UL * (uint.MaxValue - 2) + 20 + 100, target.Count);

        DdSketch viaBytes = DdSketch.Deserialize(Dense(uint.MaxValue - 2, 20));
        viaBytes.MergeSerialized(Dense(1, 20));
        viaBytes.MergeSerialized(Dense(5, 20));
        Assert.True(target.ContentEquals(viaBytes));
        Assert.Equal(target.SaturatedCount, viaBytes.SaturatedCount);

        static void AddVarUInt(List<byte> bytes, ulong value)
        {
            for (; value >= 0x80; value >>= 7)
            {
                bytes.Add((byte)(value | 0x80));
            }

            bytes.Add((byte)value);
        }
    }

    // Repeat counts around the one-byte and two-byte counter limits, so stores widen mid-stream.
    private static Gen<int> Repeats => Gen.OneOf(Gen.Int[1, 3], Gen.Int[250, 260], Gen.Int[65_530, 65_540], Gen.Const(70_000));

    [Fact]
    public void Add_CountsPastNarrowCounterLimits_EveryBinExactAgainstReference()
    {
        // Values at bin centres (no rounding at a bin edge), each added a drawn number of times, in an
        // interleaved order: bins cross 255 and 65,535 while others are still small. The reference is a
        // dictionary of bin -> count; counters of every width must hold the exact count.
        Gen.Select(Gen.Int[-300, 300].Array[1, 6], Repeats.Array[6], Gen.Bool.Array[6])
            .Sample((bins, repeats, negative) =>
            {
                var sketch = new DdSketch();
                double gamma = (1 + sketch.RelativeAccuracy) / (1 - sketch.RelativeAccuracy);
                var expected = new Dictionary<(int, bool), ulong>();
                var values = new List<double>();
                int remaining = bins.Length;
                int[] left = [.. repeats.Take(bins.Length)];
                while (remaining > 0)
                {
                    remaining = 0;
                    for (int b = 0; b < bins.Length; b++)
                    {
                        int step = Math.Min(left[b], 1 + (left[b] / 3));
                        double magnitude = Math.Pow(gamma, bins[b] - 0.5);
                        double value = negative[b] ? -magnitude : magnitude;
                        for (int k = 0; k < step; k++)
                        {
                            sketch.Add(value);
                            values.Add(value);
                        }

                        int index = sketch.GetBinIndex(magnitude);
                        expected[(index, negative[b])] = expected.GetValueOrDefault((index, negative[b])) + (ulong)step;
                        left[b] -= step;
                        remaining += left[b] > 0 ? 1 : 0;
                    }
                }

                foreach (((int index, bool neg), ulong count) in expected)
                {
                    (uint actual, int width) = sketch.GetBin(index, neg);
                    Assert.Equal(count, actual);
                    Assert.True(count <= (width == 1 ? byte.MaxValue : width == 2 ? ushort.MaxValue : uint.MaxValue), $"count {count} in {width}-byte counters");
                }

                Assert.Equal((ulong)values.Count, sketch.Count);
                AssertWithinAlpha([.. values], sketch, s_quantiles, "widened");
                DdSketch read = DdSketch.Deserialize(sketch.ToArray());
                Assert.True(read.ContentEquals(sketch), "round trip through the 32-bit reader");
                Assert.Equal(sketch.ToArray(), read.ToArray());
            }, iter: 60);
    }

    [Fact]
    public void Merge_StoresOfDifferentCounterWidths_SameAsAddingEveryValue()
    {
        // Three parts whose stores end at one, two and four bytes per counter, merged in every order
        // (and through bytes) into empty and non-empty targets: the result is the sketch of all values.
        var random = new Random(41);
        double[] Part(int distinct, int repeat) => [.. Enumerable.Range(0, distinct).SelectMany(_ =>
        {
            double v = 0.01 * Math.Exp(random.NextDouble() * 3) * (random.Next(4) == 0 ? -1 : 1);
            return Enumerable.Repeat(v, repeat);
        })];
        double[][] parts = [Part(40, 3), Part(10, 300), Part(3, 70_000)];
        DdSketch all = Build([.. parts.SelectMany(p => p)]);
        int[][] orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        foreach (int[] order in orders)
        {
            var merged = new DdSketch();
            var viaBytes = new DdSketch();
            DdSketch intoFirst = Build(parts[order[0]]);
            foreach (int p in order)
            {
                DdSketch part = Build(parts[p]);
                merged.Merge(part);
                viaBytes.MergeSerialized(part.ToArray());
                if (p != order[0])
                {
                    intoFirst.Merge(part);
                }
            }

            Assert.True(all.ContentEquals(merged), $"merge {string.Join(",", order)}");
            Assert.True(all.ContentEquals(viaBytes), $"merge of bytes {string.Join(",", order)}");
            Assert.True(all.ContentEquals(intoFirst), $"merge into the first part {string.Join(",", order)}");
            Assert.Equal(all.ToArray(), merged.ToArray());
        }
    }

    [Fact]
    public void Add_AfterClearWithWidenedCounters_AllocatesNothing()
    {
        // A pooled sketch is cleared and reused each window: it keeps its array and counter width, so
        // the next window's values, even past 255 in a bin, allocate nothing.
        var random = new Random(43);
        double[] window = [.. Enumerable.Range(0, 4096).Select(i => i % 2 == 0 ? 0.5 : 0.02 * Math.Exp(2 * random.NextDouble()))];
        var sketch = new DdSketch();
        long bytes = AllocationProbe.MeasuredBytes(() =>
        {
            sketch.Clear();
            foreach (double v in window)
            {
                sketch.Add(v);
            }
        });

        Assert.True(bytes < window.Length, $"{bytes} bytes allocated over {window.Length} adds after a clear");
        Assert.Equal((uint)2048, sketch.GetBin(sketch.GetBinIndex(0.5), negative: false).Count);
    }

    [Fact]
    public void EstimatedBytes_LatencyWindowOf200Values_OneByteCounters()
    {
        // The memory target of issue 13: a window's latency sketch (200 log-normal values, sigma 0.5)
        // holds its bins in one-byte counters: well under the 4 bytes a bin of the earlier store.
        var random = new Random(47);
        var sketch = new DdSketch();
        for (int i = 0; i < 200; i++)
        {
            double u1 = 1.0 - random.NextDouble();
            double u2 = random.NextDouble();
            sketch.Add(0.02 * Math.Exp(0.5 * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2)));
        }

        sketch.GetQuantiles([0.5], new double[1]);
        int index = sketch.GetBinIndex(0.02);
        Assert.Equal(1, sketch.GetBin(index, negative: false).CounterBytes);
        int span = sketch.GetBinIndex(sketch.Max) - sketch.GetBinIndex(sketch.Min) + 1;
        // 96 bytes of fields, a 24-byte array header, and at most 1.5 counters per bin of the span.
        Assert.True(sketch.EstimatedBytes <= 96 + 24 + (span * 3 / 2) + 32, $"{sketch.EstimatedBytes} bytes for a span of {span} bins");
    }
}
