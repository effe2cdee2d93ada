using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// Probe 7: the public DdSketch decoding against hostile bytes, from docs/statistics.md ("Serialization, version 1"
/// and "What a reader allocates"): every refused payload throws <see cref="FormatException"/> (never another exception,
/// a hang or a crash), allocates only its exception, and an accepted one answers and round-trips; what a read
/// allocates stays within 8 · min(M, L) + 512 bytes for dense stores and 8 · M + 512 for sparse ones (plus 16 KB for
/// an exception); <see cref="DdSketch.MergeSerialized"/> leaves its target unchanged on refused bytes.
/// </summary>
public class SketchDecodingProbe7BlackBoxTests
{
    private const long ExceptionAllowance = 16 * 1024;

    private static byte[] VarUInt(ulong v)
    {
        var bytes = new List<byte>();
        while (v >= 0x80)
        {
            bytes.Add((byte)(v | 0x80));
            v >>= 7;
        }

        bytes.Add((byte)v);
        return [.. bytes];
    }

    private static byte[] ZigZag(long v) => VarUInt((ulong)((v << 1) ^ (v >> 63)));

    /// <summary>Version 1 header: flags, α, bin limit, count, zero count, and min/max when count &gt; 0.</summary>
    private static byte[] Header(byte flags, double alpha, ulong maxBins, ulong count, ulong zeroCount, double min = 1, double max = 2)
    {
        var bytes = new List<byte> { 1, flags };
        bytes.AddRange(BitConverter.GetBytes(alpha));
        bytes.AddRange(VarUInt(maxBins));
        bytes.AddRange(VarUInt(count));
        bytes.AddRange(VarUInt(zeroCount));
        if (count > 0)
        {
            bytes.AddRange(BitConverter.GetBytes(min));
            bytes.AddRange(BitConverter.GetBytes(max));
        }

        return [.. bytes];
    }

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];

    /// <summary>
    /// Reads <paramref name="payload"/>: a <see cref="FormatException"/>, or a sketch that answers and round-trips; either
    /// way within the documented allocation cap. Merging it into another sketch leaves that sketch
    /// unchanged when the read was refused.
    /// </summary>
    private static void AssertReadOrRefused(byte[] payload, string what, int maxBins = DdSketch.MaxMaxBins)
    {
        Exception? refused = null;
        DdSketch? read = null;
        long before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            read = DdSketch.Deserialize(payload, maxBins);
        }
        catch (Exception e)
        {
            refused = e;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        long cap = (8L * maxBins) + 512 + ExceptionAllowance;
        Assert.True(allocated <= cap, $"{what}: the read allocated {allocated} bytes, above the cap {cap}");
        if (refused is not null)
        {
            Assert.True(refused is FormatException, $"{what}: {refused.GetType().Name}: {refused.Message}");
            var target = new DdSketch();
            target.Add(3);
            target.Add(-2);
            byte[] targetBytes = target.ToArray();
            Exception? mergeRefused = Record.Exception(() => target.MergeSerialized(payload));
            Assert.True(mergeRefused is FormatException or ArgumentException, $"{what}: MergeSerialized threw {mergeRefused?.GetType().Name ?? "nothing"}");
            Assert.Equal(targetBytes, target.ToArray());
            return;
        }

        Assert.NotNull(read);
        _ = read.GetQuantile(0.5);
        DdSketch again = DdSketch.Deserialize(read.ToArray(), maxBins);
        Assert.True(read.ContentEquals(again), $"{what}: the sketch read does not round-trip");
    }

    private static IEnumerable<(string Name, byte[] Bytes)> ValidSketches()
    {
        var empty = new DdSketch();
        yield return ("empty", empty.ToArray());
        var dense = new DdSketch();
        for (int i = 1; i <= 500; i++)
        {
            dense.Add(i * 0.01);
            dense.Add(-i);
        }

        dense.Add(0);
        yield return ("dense", dense.ToArray());
        var sparse = new DdSketch();
        sparse.Add(1e-300);
        sparse.Add(1e-10);
        sparse.Add(1e100);
        sparse.Add(-1e50);
        yield return ("sparse", sparse.ToArray());
        var zeros = new DdSketch();
        zeros.Add(0);
        zeros.Add(double.Epsilon);
        yield return ("zero bin only", zeros.ToArray());
        var wide = new DdSketch(0.01, DdSketch.MaxMaxBins);
        wide.Add(1e-300);
        wide.Add(1e300);
        yield return ("sparse, wide", wide.ToArray());
    }

    [Fact]
    public void Deserialize_ValidSketchCutAtEveryOffset_FormatExceptionEachTimeTargetOfMergeUnchanged()
    {
        foreach ((string name, byte[] bytes) in ValidSketches())
        {
            Assert.True(DdSketch.Deserialize(bytes).ContentEquals(DdSketch.Deserialize(DdSketch.Deserialize(bytes).ToArray())), name);
            for (int cut = 0; cut < bytes.Length; cut++)
            {
                byte[] payload = bytes.AsSpan(0, cut).ToArray();
                Assert.Throws<FormatException>(() => DdSketch.Deserialize(payload));
                AssertReadOrRefused(payload, $"{name} cut at {cut} of {bytes.Length}");
            }
        }
    }

    [Fact]
    public void Deserialize_ValidSketchWithTrailingBytes_FormatException()
    {
        foreach ((string name, byte[] bytes) in ValidSketches())
        {
            foreach (byte[] tail in (byte[][])[[0], [1], [0x80], [0xFF, 0xFF, 0xFF, 0xFF], new byte[64]])
            {
                byte[] payload = Concat(bytes, tail);
                Assert.Throws<FormatException>(() => DdSketch.Deserialize(payload));
                AssertReadOrRefused(payload, $"{name} + {tail.Length} bytes");
            }
        }
    }

    public static TheoryData<string, byte[]> HostileHeadersAndStores()
    {
        byte[] maxULong = VarUInt(ulong.MaxValue);
        byte[] overlong = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]; // 70 bits: above 2^64
        byte[] elevenBytes = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        byte[] ok = Header(0, 0.01, 2048, 2, 0);
        return new TheoryData<string, byte[]>
        {
            { "count above 2^64 (overlong varuint)", Concat([1, 0], BitConverter.GetBytes(0.01), VarUInt(2048), overlong) },
            { "count in 11 bytes", Concat([1, 0], BitConverter.GetBytes(0.01), VarUInt(2048), elevenBytes) },
            { "bin limit 2^64 - 1", Concat([1, 0], BitConverter.GetBytes(0.01), maxULong, VarUInt(0), VarUInt(0), VarUInt(0), VarUInt(0)) },
            { "bin limit 2^31 (negative as int)", Header(0, 0.01, 1UL << 31, 0, 0) },
            { "bin limit 15", Concat(Header(0, 0.01, 15, 0, 0), VarUInt(0), VarUInt(0)) },
            { "alpha NaN", Concat(Header(0, double.NaN, 2048, 0, 0), VarUInt(0), VarUInt(0)) },
            { "alpha 0.5 + ulp", Concat(Header(0, Math.BitIncrement(0.5), 2048, 0, 0), VarUInt(0), VarUInt(0)) },
            { "alpha -0.01", Concat(Header(0, -0.01, 2048, 0, 0), VarUInt(0), VarUInt(0)) },
            { "unknown flag", Concat(Header(0x02, 0.01, 2048, 0, 0), VarUInt(0), VarUInt(0)) },
            { "version 2", Concat([2], Header(0, 0.01, 2048, 0, 0).AsSpan(1).ToArray(), VarUInt(0), VarUInt(0)) },
            { "dense length 2^63 (negative as long)", Concat(ok, VarUInt(1UL << 63), ZigZag(0), [1, 1]) },
            { "dense length 2^32 - 1 (negative as int)", Concat(ok, VarUInt(uint.MaxValue), ZigZag(0), [1, 1]) },
            { "dense length 2^64 - 1", Concat(ok, maxULong, ZigZag(0), [1, 1]) },
            { "dense first index 2^40", Concat(ok, VarUInt(2), ZigZag(1L << 40), [1, 1], VarUInt(0)) },
            { "dense first index long.MinValue", Concat(ok, VarUInt(2), ZigZag(long.MinValue), [1, 1], VarUInt(0)) },
            { "dense first index int.MaxValue - 1, length 2", Concat(ok, VarUInt(2), ZigZag(int.MaxValue - 1), [1, 1], VarUInt(0)) },
            { "dense first index int.MaxValue, length 2 (past int)", Concat(ok, VarUInt(2), ZigZag(int.MaxValue), [1, 1], VarUInt(0)) },
            { "dense first index int.MinValue", Concat(ok, VarUInt(2), ZigZag(int.MinValue), [1, 1], VarUInt(0)) },
            { "dense bin count 2^32", Concat(Header(0, 0.01, 2048, 1UL << 32, 0), VarUInt(1), ZigZag(0), VarUInt(1UL << 32), VarUInt(0)) },
            { "dense bins above count", Concat(ok, VarUInt(2), ZigZag(0), [2, 1], VarUInt(0)) },
            { "count 1, zero count 2^64 - 1", Concat(Header(0, 0.01, 2048, 1, ulong.MaxValue), VarUInt(0), VarUInt(0)) },
            { "bins 2^32 - 1 twice against count 2^64 - 1 wrapping", Concat(Header(0, 0.01, 2048, ulong.MaxValue, ulong.MaxValue - 1), VarUInt(2), ZigZag(0), VarUInt(uint.MaxValue), VarUInt(uint.MaxValue), VarUInt(0)) },
            { "sparse occupied 2^63", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(1UL << 63), ZigZag(0), VarUInt(1), VarUInt(0)) },
            { "sparse gap 2^32", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(2), ZigZag(0), VarUInt(1), VarUInt(1UL << 32), VarUInt(1), VarUInt(0)) },
            { "sparse gap 2^64 - 1", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(2), ZigZag(0), VarUInt(1), maxULong, VarUInt(1), VarUInt(0)) },
            { "sparse gap past int from int.MaxValue - 1", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(2), ZigZag(int.MaxValue - 1), VarUInt(1), VarUInt(5), VarUInt(1), VarUInt(0)) },
            { "sparse span above limit", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(2), ZigZag(0), VarUInt(1), VarUInt(2048), VarUInt(1), VarUInt(0)) },
            { "sparse span at largest limit", Concat(Header(1, 0.01, DdSketch.MaxMaxBins, 2, 0), VarUInt(2), ZigZag(-500_000), VarUInt(1), VarUInt(DdSketch.MaxMaxBins - 1), VarUInt(1), VarUInt(0)) },
            { "sparse zero gap", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(2), ZigZag(0), VarUInt(1), VarUInt(0), VarUInt(1), VarUInt(0)) },
            { "sparse zero count", Concat(Header(1, 0.01, 2048, 2, 0), VarUInt(2), ZigZag(0), VarUInt(0), VarUInt(1), VarUInt(1), VarUInt(0)) },
            { "min above max", Concat(Header(0, 0.01, 2048, 2, 0, min: 5, max: 1), VarUInt(1), ZigZag(0), VarUInt(2), VarUInt(0)) },
            { "min NaN", Concat(Header(0, 0.01, 2048, 2, 0, min: double.NaN, max: 1), VarUInt(1), ZigZag(0), VarUInt(2), VarUInt(0)) },
        };
    }

    [Theory]
    [MemberData(nameof(HostileHeadersAndStores))]
    public void Deserialize_HostilePayload_FormatExceptionOrAValidSketchWithinTheAllocationCap(string what, byte[] payload)
    {
        AssertReadOrRefused(payload, what);
        AssertReadOrRefused(payload, what + " (limit 2048)", DdSketch.DefaultMaxBinsPerSign);
    }

    [Fact]
    public void Deserialize_PayloadDeclaringALargerLimitThanTheReaders_RefusedBeforeAllocating()
    {
        var wide = new DdSketch(0.01, DdSketch.MaxMaxBins);
        wide.Add(1e-300);
        wide.Add(1e300);
        byte[] bytes = wide.ToArray();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<FormatException>(() => DdSketch.Deserialize(bytes, 2048));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < ExceptionAllowance, $"a refused payload allocated {allocated} bytes");
    }

    [Fact]
    public void MergeSerialized_CountsPassing2To64_OverflowExceptionTargetUnchanged()
    {
        // Count 2^64 - 1, all in the zero bin: a valid sketch (bins add up to count - zero count = 0).
        byte[] full = Concat(Header(0, 0.01, 2048, ulong.MaxValue, ulong.MaxValue, min: 0, max: 0), VarUInt(0), VarUInt(0));
        DdSketch target = DdSketch.Deserialize(full);
        Assert.Equal(ulong.MaxValue, target.Count);
        byte[] one = Concat(Header(0, 0.01, 2048, 1, 1, min: 0, max: 0), VarUInt(0), VarUInt(0));
        Assert.Throws<OverflowException>(() => target.MergeSerialized(one));
        Assert.Throws<OverflowException>(() => target.Merge(DdSketch.Deserialize(one)));
        Assert.Throws<OverflowException>(() => target.Add(0));
        Assert.Equal(full, target.ToArray());
    }
}
