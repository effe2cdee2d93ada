using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Monitoring.Stream.Statistics;

// Quantile answers: the public queries and the one rank walker every path uses.
public sealed partial class DdSketch
{
    /// <summary>
    /// The value at quantile <paramref name="q"/>: within alpha of the exact value at rank
    /// <c>floor(q (n - 1))</c> of the sorted values; exactly the minimum at 0 and the maximum at 1.
    /// </summary>
    /// <returns>The estimate, or NaN when the sketch is empty.</returns>
    public double GetQuantile(double q)
    {
        Span<double> result = stackalloc double[1];
        GetQuantiles([q], result);
        return result[0];
    }

    /// <summary>Answers several quantiles in one pass over the bins.</summary>
    /// <param name="quantiles">Quantiles in [0, 1], in ascending order.</param>
    /// <param name="destination">Receives one estimate per quantile (NaN when the sketch is empty).</param>
    public void GetQuantiles(ReadOnlySpan<double> quantiles, Span<double> destination)
    {
        if (destination.Length < quantiles.Length)
        {
            throw new ArgumentException("Destination is shorter than the list of quantiles.", nameof(destination));
        }

        double previous = 0;
        foreach (double q in quantiles)
        {
            if (!(q >= 0 && q <= 1))
            {
                throw new ArgumentOutOfRangeException(nameof(quantiles), q, "A quantile must be within [0, 1].");
            }

            if (q < previous)
            {
                throw new ArgumentException("Quantiles must be in ascending order.", nameof(quantiles));
            }

            previous = q;
        }

        Span<ulong> thresholds = quantiles.Length <= RankCursor.StackQuantiles ? stackalloc ulong[RankCursor.StackQuantiles] : new ulong[quantiles.Length];
        var ranks = new RankCursor(this, quantiles, destination, thresholds);
        ranks.WalkNegativeAndZero(_negative.GetOccupied());
        ranks.WalkPositive(_positive.GetOccupied());
        ranks.Finish();
    }

    /// <summary>
    /// The one quantile walker: answers ascending ranks while the bins are visited in value order —
    /// negative bins by decreasing magnitude, the zero bin, then positive bins by increasing index,
    /// which is also the order in which the encoders write the positive store, so the window summary
    /// answers its quantiles in the pass that serializes.
    /// </summary>
    /// <remarks>
    /// A rank <c>r = q (n - 1)</c> is answered by the first bin whose cumulative count exceeds it; for
    /// integer cumulative counts that is "exceeds <c>floor(r)</c>", so the walk compares integers.
    /// PERF: a walking loop keeps the cumulative count and the next pending rank in locals and calls
    /// <see cref="Answer"/> only when a rank is crossed, a handful of times a sketch; with no rank
    /// pending the threshold is <see cref="ulong.MaxValue"/> and the test is never taken.
    /// </remarks>
    private ref struct RankCursor
    {
        /// <summary>Quantiles answered with thresholds on the stack; more use an array.</summary>
        public const int StackQuantiles = 16;

        private readonly DdSketch _sketch;
        private readonly Span<double> _results;
        private readonly Span<ulong> _thresholds;
        private readonly int _to;
        private int _next;

        /// <summary>Values counted in the bins visited so far.</summary>
        public ulong Cumulative;

        /// <summary>The next pending rank, or <see cref="ulong.MaxValue"/> when none is pending.</summary>
        public ulong Threshold;

        /// <summary>A cursor with no rank to answer, for plain serialization.</summary>
        public RankCursor()
        {
            _sketch = null!;
            Threshold = ulong.MaxValue;
        }

        /// <summary>Answers the quantiles 0 and 1 (the extremes) at once and sets up the others.</summary>
        /// <param name="sketch">The sketch walked.</param>
        /// <param name="quantiles">Ascending quantiles in [0, 1].</param>
        /// <param name="results">Receives one answer per quantile.</param>
        /// <param name="thresholds">Scratch, at least as long as <paramref name="quantiles"/>.</param>
        public RankCursor(DdSketch sketch, ReadOnlySpan<double> quantiles, Span<double> results, Span<ulong> thresholds)
        {
            _sketch = sketch;
            _results = results;
            _thresholds = thresholds;
            Threshold = ulong.MaxValue;
            if (sketch._count == 0)
            {
                results[..quantiles.Length].Fill(double.NaN);
                return;
            }

            int from = 0;
            int to = quantiles.Length;
            while (from < to && quantiles[from] == 0)
            {
                results[from++] = sketch._min;
            }

            while (to > from && quantiles[to - 1] == 1)
            {
                results[--to] = sketch._max;
            }

            for (int k = from; k < to; k++)
            {
                thresholds[k] = (ulong)(quantiles[k] * (sketch._count - 1));
            }

            _next = from;
            _to = to;
            if (from < to)
            {
                Threshold = thresholds[from];
            }
        }

        /// <summary>
        /// Answers every pending rank that <paramref name="cumulative"/> now exceeds with the value of
        /// the bin just counted (clamped to the extremes); returns the next pending rank.
        /// </summary>
        /// <remarks>PERF: not inlined: called a few times a walk, and inlined into the encoders' loops
        /// it made the JIT spill the loop's cumulative count and position to the stack.</remarks>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public ulong Answer(ulong cumulative, double representative)
        {
            double value = Math.Clamp(representative, _sketch._min, _sketch._max);
            while (_next < _to && cumulative > _thresholds[_next])
            {
                _results[_next++] = value;
            }

            Threshold = _next < _to ? _thresholds[_next] : ulong.MaxValue;
            return Threshold;
        }

        /// <summary>Counts the negative bins, largest magnitude (smallest value) first, then the zero bin.</summary>
        public void WalkNegativeAndZero(DdSketchBinStore.Occupied negative)
        {
            switch (negative.Shift)
            {
                case 0:
                    WalkNegativeAndZero(negative.As<byte>(), negative.First);
                    break;
                case 1:
                    WalkNegativeAndZero(negative.As<ushort>(), negative.First);
                    break;
                default:
                    WalkNegativeAndZero(negative.As<uint>(), negative.First);
                    break;
            }
        }

        /// <summary>Counts the positive bins, lowest first, until every rank is answered.</summary>
        public void WalkPositive(DdSketchBinStore.Occupied positive)
        {
            switch (positive.Shift)
            {
                case 0:
                    WalkPositive(positive.As<byte>(), positive.First);
                    break;
                case 1:
                    WalkPositive(positive.As<ushort>(), positive.First);
                    break;
                default:
                    WalkPositive(positive.As<uint>(), positive.First);
                    break;
            }
        }

        private void WalkNegativeAndZero<T>(ReadOnlySpan<T> negative, int negativeFirst)
            where T : unmanaged, IBinaryInteger<T>
        {
            ulong cumulative = Cumulative;
            ulong threshold = Threshold;
            for (int i = negative.Length - 1; i >= 0 && threshold != ulong.MaxValue; i--)
            {
                cumulative += ulong.CreateTruncating(negative[i]);
                if (cumulative > threshold)
                {
                    threshold = Answer(cumulative, -_sketch.RepresentativeOf(negativeFirst + i));
                }
            }

            if (threshold != ulong.MaxValue)
            {
                cumulative += _sketch._zeroCount;
                if (cumulative > threshold)
                {
                    Answer(cumulative, 0);
                }
            }

            Cumulative = cumulative;
        }

        private void WalkPositive<T>(ReadOnlySpan<T> positive, int positiveFirst)
            where T : unmanaged, IBinaryInteger<T>
        {
            ulong cumulative = Cumulative;
            ulong threshold = Threshold;
            for (int i = 0; i < positive.Length && threshold != ulong.MaxValue; i++)
            {
                cumulative += ulong.CreateTruncating(positive[i]);
                if (cumulative > threshold)
                {
                    threshold = Answer(cumulative, _sketch.RepresentativeOf(positiveFirst + i));
                }
            }

            Cumulative = cumulative;
        }

        /// <summary>
        /// Answers the pending ranks that fall in a positive store from the running counts after each of
        /// its <paramref name="occupied"/> occupied bins (bin <paramref name="offset"/> + <c>positions[k]</c>
        /// after <c>cumulative[k]</c>; padded past <paramref name="occupied"/> to whole vectors with
        /// <see cref="uint.MaxValue"/>). Answers what <see cref="Answer"/> would while walking those bins.
        /// </summary>
        /// <remarks>PERF: a rank is answered by the first bin whose running count exceeds it, i.e. after
        /// as many bins as have a running count not above it: counted eight bins a compare, no branch per
        /// bin, instead of a test per bin that mispredicts at each crossing.</remarks>
        public void AnswerFromCumulative(scoped ReadOnlySpan<uint> cumulative, int occupied, scoped ReadOnlySpan<ushort> positions, int offset)
        {
            ulong start = Cumulative;
            int next = _next;
            for (; next < _to; next++)
            {
                // Pending, so not below the counts before this store; counts within a store of one-byte
                // counters fit 32 bits, and a rank beyond them stays pending.
                ulong relative = _thresholds[next] - start;
                if (relative >= uint.MaxValue)
                {
                    break;
                }

                var rank = Vector256.Create((uint)relative);
                int passed = 0;
                for (int k = 0; k < occupied; k += Vector256<uint>.Count)
                {
                    passed += BitOperations.PopCount(Vector256.LessThanOrEqual(Vector256.Create(cumulative[k..]), rank).ExtractMostSignificantBits());
                }

                if (passed == occupied)
                {
                    break;
                }

                _results[next] = Math.Clamp(_sketch.RepresentativeOf(offset + positions[passed]), _sketch._min, _sketch._max);
            }

            _next = next;
            Cumulative = start + cumulative[occupied - 1];
            Threshold = next < _to ? _thresholds[next] : ulong.MaxValue;
        }

        /// <summary>
        /// Answers what is still pending with the maximum: only ranks above the binned counts, which
        /// saturated bins (see <see cref="SaturatedCount"/>) left short, can be.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Finish()
        {
            while (_next < _to)
            {
                _results[_next++] = _sketch._max;
            }
        }
    }
}
