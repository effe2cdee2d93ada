using CsCheck;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Statistics;

public class RunningMomentsTests
{
    private static RunningMoments Accumulate(ReadOnlySpan<double> values, long firstTimestamp = 0)
    {
        var moments = new RunningMoments();
        for (int i = 0; i < values.Length; i++)
        {
            moments.Add(values[i], firstTimestamp + i);
        }

        return moments;
    }

    private static void AssertRelative(double expected, double actual, double tolerance, string what)
    {
        double error = Math.Abs(actual - expected);
        double scale = Math.Max(Math.Abs(expected), Math.Abs(actual));
        Assert.True(error <= tolerance * scale, $"{what}: expected {expected:R}, got {actual:R}, relative error {error / scale:E3} > {tolerance:E1}");
    }

    [Fact]
    public void Add_LargeMeanTinySpread_VarianceWithinOnePpmOfExact()
    {
        double[] values = Distributions.LargeMeanTinySpread(200_000, seed: 1);
        var exact = new ExactMoments(values);

        RunningMoments moments = Accumulate(values);

        AssertRelative(exact.SampleVariance, moments.SampleVariance, 1e-6, "sample variance");
        AssertRelative(exact.PopulationVariance, moments.PopulationVariance, 1e-6, "population variance");
        AssertRelative(exact.Mean, moments.Mean, 1e-15, "mean");
        AssertRelative(exact.Sum, moments.Sum, 1e-15, "sum");
    }

    [Fact]
    public void NaiveSumOfSquares_LargeMeanTinySpread_IsUselessSoTheDataIsAdversarial()
    {
        // The data set above must defeat the textbook formula, or the test above proves nothing.
        double[] values = Distributions.LargeMeanTinySpread(200_000, seed: 1);
        var exact = new ExactMoments(values);
        double s1 = 0, s2 = 0;
        foreach (double v in values)
        {
            s1 += v;
            s2 += v * v;
        }

        double naive = (s2 - (s1 * s1 / values.Length)) / (values.Length - 1);

        Assert.True(Math.Abs(naive - exact.SampleVariance) > exact.SampleVariance, $"naive {naive:R} vs exact {exact.SampleVariance:R}");
    }

    // Theory rows carry only a name: xunit serializes every row at discovery, and 100,000-value
    // arrays made that take minutes and gigabytes. The data is generated inside the test.
    private static double[] AdversarialSet(string name) => name switch
    {
        "pareto-1.1" => Distributions.Pareto(100_000, seed: 2),
        "lognormal-9-decades" => Distributions.LogNormalNineDecades(100_000, seed: 3),
        "mixed-signs-zeros" => Distributions.MixedSignsWithZeros(100_000, seed: 4),
        "negatives" => Distributions.Negatives(100_000, seed: 5),
        "zeros" => new double[1000],
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown data set"),
    };

    [Theory]
    [InlineData("pareto-1.1")]
    [InlineData("lognormal-9-decades")]
    [InlineData("mixed-signs-zeros")]
    [InlineData("negatives")]
    [InlineData("zeros")]
    public void Add_AdversarialData_MatchesExactReference(string name)
    {
        double[] values = AdversarialSet(name);
        var exact = new ExactMoments(values);

        RunningMoments moments = Accumulate(values);

        Assert.Equal(values.Length, moments.Count);
        Assert.Equal(values.Min(), moments.Min);
        Assert.Equal(values.Max(), moments.Max);
        Assert.Equal(values[^1], moments.Last);
        AssertRelative(exact.Sum, moments.Sum, 1e-14, name + " sum");
        AssertRelative(exact.Mean, moments.Mean, 1e-9, name + " mean");
        AssertRelative(exact.M2, moments.M2, 1e-9, name + " m2");
        AssertRelative(exact.SampleVariance, moments.SampleVariance, 1e-9, name + " variance");
    }

    [Fact]
    public void Add_AllEqualValues_ZeroVarianceAndExactMean()
    {
        var moments = new RunningMoments();
        for (int i = 0; i < 10_000; i++)
        {
            moments.Add(123456.789, i);
        }

        Assert.Equal(123456.789, moments.Mean);
        Assert.Equal(0, moments.M2);
        Assert.Equal(0, moments.SampleVariance);
        Assert.Equal(123456.789, moments.Min);
        Assert.Equal(123456.789, moments.Max);
    }

    [Fact]
    public void Add_SingleValue_PopulationVarianceZeroSampleVarianceUndefined()
    {
        var moments = new RunningMoments();
        moments.Add(-42.5, 7);

        Assert.Equal(1, moments.Count);
        Assert.Equal(-42.5, moments.Mean);
        Assert.Equal(-42.5, moments.Sum);
        Assert.Equal(0, moments.PopulationVariance);
        Assert.True(double.IsNaN(moments.SampleVariance));
        Assert.Equal(-42.5, moments.Last);
        Assert.Equal(7, moments.LastTimestamp);
    }

    [Fact]
    public void Empty_AllStatisticsAreNaN()
    {
        var moments = new RunningMoments();

        Assert.Equal(0, moments.Count);
        Assert.True(double.IsNaN(moments.Mean));
        Assert.True(double.IsNaN(moments.Min));
        Assert.True(double.IsNaN(moments.Max));
        Assert.True(double.IsNaN(moments.PopulationVariance));
        Assert.Equal(0, moments.Sum);
    }

    [Fact]
    public void Sum_CancellingMagnitudes_CompensationKeepsTheSmallTerm()
    {
        var moments = new RunningMoments();
        moments.Add(1e100, 0);
        moments.Add(1.0, 1);
        moments.Add(-1e100, 2);

        Assert.Equal(1.0, moments.Sum);
    }

    [Fact]
    public void Last_OutOfOrderTimestamps_TakesLatestEventTimeAndLaterArrivalOnTie()
    {
        var moments = new RunningMoments();
        moments.Add(1, 100);
        moments.Add(2, 50);
        Assert.Equal(1, moments.Last);
        moments.Add(3, 100);
        Assert.Equal(3, moments.Last);
    }

    [Fact]
    public void Add_SteadyState_AllocatesNothing()
    {
        var moments = new RunningMoments();
        moments.Add(1, 0);
        const int Calls = 100_000;
        long bytes = AllocationProbe.MeasuredBytes(() =>
        {
            for (int i = 0; i < Calls; i++)
            {
                moments.Add(i * 0.5, i);
            }
        });

        Assert.True(bytes < Calls, $"{bytes} bytes allocated over {Calls} adds");
    }

    [Fact]
    public void Merge_RandomSplits_EqualsWholeWithin1e12()
    {
        Gen.Select(Gen.Double[-1e6, 1e6].Array[1, 400], Gen.Int[0, 400], Gen.Int[0, 400])
            .Sample((values, cut1, cut2) =>
            {
                int a = Math.Min(cut1, values.Length);
                int b = Math.Min(Math.Max(cut2, a), values.Length);
                RunningMoments whole = Accumulate(values);
                RunningMoments left = Accumulate(values.AsSpan(0, a));
                RunningMoments middle = Accumulate(values.AsSpan(a, b - a), a);
                RunningMoments right = Accumulate(values.AsSpan(b), b);

                // Merge in an order different from the data's, as shards and instances would.
                right.Merge(left);
                right.Merge(middle);

                AssertMergedEqualsWhole(whole, right);
            }, iter: 2000);
    }

    [Fact]
    public void Merge_AdversarialSplit_EqualsWholeWithin1e12()
    {
        double[] values = Distributions.LargeMeanTinySpread(10_000, seed: 9);
        RunningMoments whole = Accumulate(values);
        RunningMoments left = Accumulate(values.AsSpan(0, 3_333));
        RunningMoments right = Accumulate(values.AsSpan(3_333), 3_333);

        left.Merge(right);

        Assert.Equal(whole.Count, left.Count);
        AssertRelative(whole.Mean, left.Mean, 1e-12, "mean");
        AssertRelative(whole.M2, left.M2, 1e-12, "m2 against the unsplit state");
        AssertRelative(new ExactMoments(values).M2, left.M2, 1e-6, "m2 against the exact reference");
    }

    [Fact]
    public void Merge_IntoEmpty_CopiesAndEmptyIntoFull_NoChange()
    {
        RunningMoments full = Accumulate([1.0, 2.0, 3.0]);
        var empty = new RunningMoments();

        empty.Merge(full);
        Assert.Equal(full, empty);

        RunningMoments copy = full;
        copy.Merge(new RunningMoments());
        Assert.Equal(full, copy);
    }

    [Fact]
    public void FromParts_RoundTripsTheState()
    {
        RunningMoments original = Accumulate([5.0, -1.0, 2.5, 2.5]);

        RunningMoments rebuilt = RunningMoments.FromParts(original.Count, original.Sum, original.Min, original.Max,
            original.Mean, original.M2, original.Last, original.LastTimestamp);

        Assert.Equal(original, rebuilt);
        Assert.Throws<ArgumentException>(() => RunningMoments.FromParts(2, 1, 5, 1, 1, 0, 1, 0));
    }

    private const double Bound = RunningMoments.MaxMagnitude;

    private static void AssertFinite(RunningMoments m, string what)
    {
        Assert.True(double.IsFinite(m.Sum) && double.IsFinite(m.Mean) && double.IsFinite(m.M2) && m.M2 >= 0
            && double.IsFinite(m.PopulationVariance) && double.IsFinite(m.PopulationStdDev), $"{what}: {m}, m2={m.M2:R}");
    }

    [Fact]
    public void Add_DoubleMaxValue_OverflowsSoTheBoundIsNeeded()
    {
        // What ingestion refuses (RejectReason.ValueOutOfRange): the kernel alone cannot keep these finite.
#if DEBUG
        // A debug build asserts the precondition instead of computing what it guards against.
        Assert.ThrowsAny<Exception>(() => Accumulate([double.MaxValue, double.MaxValue]));
        Assert.ThrowsAny<Exception>(() => Accumulate([double.MaxValue, -double.MaxValue]));
#else
        Assert.True(double.IsNaN(Accumulate([double.MaxValue, double.MaxValue]).Sum)); // infinity plus a compensation of -infinity
        Assert.False(double.IsFinite(Accumulate([double.MaxValue, -double.MaxValue]).M2));
#endif
    }

    [Theory]
    [InlineData("twice-the-bound")]
    [InlineData("both-signs")]
    [InlineData("alternating")]
    [InlineData("halves")]
    [InlineData("with-epsilons")]
    public void Add_ValuesAtTheBound_EveryMomentFinite(string name)
    {
        double[] values = name switch
        {
            "twice-the-bound" => [Bound, Bound],
            "both-signs" => [Bound, -Bound],
            "alternating" => [.. Enumerable.Range(0, 10_000).Select(i => i % 2 == 0 ? Bound : -Bound)],
            "halves" => [.. Enumerable.Repeat(-Bound, 5_000), .. Enumerable.Repeat(Bound, 5_000)],
            "with-epsilons" => [double.Epsilon, Bound, -double.Epsilon, -Bound, 0, Math.BitDecrement(Bound)],
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };

        RunningMoments moments = Accumulate(values);

        AssertFinite(moments, name);
        ExactMoments exact = new(values);
        AssertRelative(exact.M2, moments.M2, 1e-9, $"{name} m2");
        Assert.True(Math.Abs(exact.Mean - moments.Mean) <= 1e-12 * Bound, $"{name} mean {moments.Mean:R} vs {exact.Mean:R}");
    }

    private static readonly Gen<double> s_nearTheBound = Gen.Frequency(
        (3, Gen.OneOf(Gen.Const(Bound), Gen.Const(-Bound), Gen.Const(Math.BitDecrement(Bound)), Gen.Const(-Math.BitDecrement(Bound)))),
        (1, Gen.OneOf(Gen.Const(double.Epsilon), Gen.Const(-double.Epsilon), Gen.Const(0.0))),
        (2, Gen.Double[-Bound, Bound]),
        (2, Gen.Double[-1, 1].Select(f => f * 1e99)));

    [Fact]
    public void Merge_AdversarialValuesNearTheBound_FiniteAndEqualToWhole()
    {
        Gen.Select(s_nearTheBound.Array[1, 200], Gen.Int[0, 200], Gen.Int[0, 200])
            .Sample((values, cut1, cut2) =>
            {
                int a = Math.Min(cut1, values.Length);
                int b = Math.Min(Math.Max(cut2, a), values.Length);
                RunningMoments whole = Accumulate(values);
                RunningMoments left = Accumulate(values.AsSpan(0, a));
                RunningMoments middle = Accumulate(values.AsSpan(a, b - a), a);
                RunningMoments right = Accumulate(values.AsSpan(b), b);

                right.Merge(left);
                right.Merge(middle);

                AssertFinite(whole, "whole");
                AssertFinite(right, "merged");
                Assert.Equal(whole.Count, right.Count);
                Assert.Equal(whole.Min, right.Min);
                Assert.Equal(whole.Max, right.Max);
                Assert.True(Math.Abs(whole.Mean - right.Mean) <= 1e-12 * Bound, $"mean {whole.Mean:R} vs {right.Mean:R}");
                Assert.True(Math.Abs(whole.M2 - right.M2) <= 1e-12 * Math.Max(whole.M2, Bound * Bound), $"m2 {whole.M2:R} vs {right.M2:R}");
            }, iter: 2000);
    }

    [Fact]
    public void Merge_LargestCountsAtTheBound_StaysFinite()
    {
        // Half the largest count at +-B with the largest M2 such values allow (count B^2), merged
        // with the other half at -B: the largest terms the merge can meet, all finite.
        const long Half = 1L << 62;
        RunningMoments spread = RunningMoments.FromParts(Half, 0, -Bound, Bound, 0, Bound * Bound * Half, Bound, 1);
        RunningMoments low = RunningMoments.FromParts(Half - 1, -Bound * (Half - 1), -Bound, -Bound, -Bound, 0, -Bound, 2);

        spread.Merge(low);

        Assert.Equal(long.MaxValue, spread.Count);
        AssertFinite(spread, "merged");
        Assert.Equal(-Bound, spread.Min);
    }

    [Fact]
    public void Merge_CountPastLongMaxValue_ThrowsAndLeavesStateUnchanged()
    {
        RunningMoments full = RunningMoments.FromParts(long.MaxValue, 0, -1, 1, 0, long.MaxValue, 1, 5);
        RunningMoments copy = full;
        RunningMoments one = Accumulate([1.0]);

        Assert.Contains("2^63", Assert.Throws<OverflowException>(() => full.Merge(one)).Message);
        Assert.Equal(copy, full);

        Assert.Throws<OverflowException>(() => full.Add(1, 6));
        Assert.Equal(copy, full);
    }

    [Theory]
    [InlineData(double.PositiveInfinity, 0.0)]
    [InlineData(double.NaN, 0.0)]
    [InlineData(0.0, double.PositiveInfinity)]
    [InlineData(0.0, 5e200)]
    [InlineData(0.0, -1.0)]
    public void FromParts_SumOrM2NoInRangeValuesGive_Throws(double sum, double m2) =>
        Assert.Throws<ArgumentException>(() => RunningMoments.FromParts(1, sum, -Bound, Bound, 0, m2, 0, 0));

    [Theory]
    [InlineData(-double.MaxValue, double.MaxValue, 0.0, 0.0)]
    [InlineData(-1.0, 1e101, 0.0, 0.0)]
    [InlineData(-1.0, 1.0, double.NaN, 0.0)]
    [InlineData(-1.0, 1.0, 5.0, 0.0)]
    [InlineData(-1.0, 1.0, 0.0, 2.0)]
    public void FromParts_ExtremesMeanOrLastOutOfRange_Throws(double min, double max, double mean, double last) =>
        Assert.Throws<ArgumentException>(() => RunningMoments.FromParts(2, 0, min, max, mean, 1, last, 0));

    private static void AssertMergedEqualsWhole(RunningMoments whole, RunningMoments merged)
    {
        Assert.Equal(whole.Count, merged.Count);
        Assert.Equal(whole.Min, merged.Min);
        Assert.Equal(whole.Max, merged.Max);
        Assert.Equal(whole.Last, merged.Last);
        Assert.Equal(whole.LastTimestamp, merged.LastTimestamp);
        AssertRelative(whole.Sum, merged.Sum, 1e-12, "sum");
        // Mean and M2 can be near zero while the data are large: scale the tolerance by the data.
        double scale = Math.Max(Math.Abs(whole.Min), Math.Abs(whole.Max));
        Assert.True(Math.Abs(whole.Mean - merged.Mean) <= 1e-12 * scale, $"mean {whole.Mean:R} vs {merged.Mean:R}");
        Assert.True(Math.Abs(whole.M2 - merged.M2) <= 1e-12 * Math.Max(whole.M2, scale * scale * 1e-3),
            $"m2 {whole.M2:R} vs {merged.M2:R}");
    }
}
