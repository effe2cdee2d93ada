using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Monitoring.Stream.Ingest;

namespace Monitoring.Stream.Statistics;

public sealed partial class DdSketch
{
    /// <summary>
    /// How close to a bin boundary (in units of bins) a vector logarithm's index is recomputed with
    /// <see cref="Math.Log(double)"/>. <see cref="Vector256.Log(Vector256{double})"/> is within a few ulps of
    /// <see cref="Math.Log(double)"/> but not always equal, and an index only differs where the two products
    /// straddle an integer; the largest product (about 3.6e7 at the finest accuracy) has ulps near 7e-9,
    /// so this margin covers hundreds of ulps; about two values in a million fall inside it.
    /// </summary>
    private const double VectorIndexMargin = 1e-6;

    /// <summary>
    /// The bin index of each point's magnitude, as <see cref="MagnitudeIndexOf"/> computes it (bit for bit),
    /// four points a step: a shard computes a whole batch's indices before aggregating it.
    /// </summary>
    /// <remarks>PERF: <see cref="Math.Log(double)"/> is a call into the C library per point, about a tenth of a
    /// shard's time on bound writes; the vector logarithm takes four values a step at about half the cost per
    /// value. An index whose product lies within <see cref="VectorIndexMargin"/> of an integer (or that is not
    /// finite) is recomputed by the scalar formula, so the result never depends on which path ran.</remarks>
    internal void MagnitudeIndicesOf(ReadOnlySpan<IngestPoint> points, Span<int> indices)
    {
        if (indices.Length < points.Length)
        {
            throw new ArgumentException("The index span is shorter than the points.", nameof(indices));
        }

        int k = 0;
        if (Vector256.IsHardwareAccelerated && Avx.IsSupported)
        {
            Vector256<double> multiplier = Vector256.Create(_multiplier);
            Vector256<double> minIndexable = Vector256.Create(_minIndexable);
            Vector256<double> margin = Vector256.Create(VectorIndexMargin);
            Vector256<double> infinity = Vector256.Create(double.PositiveInfinity);
            ref int first = ref MemoryMarshal.GetReference(indices);
            for (; k + 4 <= points.Length; k += 4)
            {
                Vector256<double> magnitude = Vector256.Abs(Vector256.Create(
                    points[k].Value, points[k + 1].Value, points[k + 2].Value, points[k + 3].Value));
                Vector256<double> product = Vector256.Log(magnitude) * multiplier;
                Vector256<double> indexable = Vector256.GreaterThan(magnitude, minIndexable);
                // Near a boundary, or not finite (never for aggregated values): the scalar formula decides.
                Vector256<double> recheck = Vector256.LessThan(Vector256.Abs(product - Vector256.Round(product)), margin)
                    | ~Vector256.LessThan(magnitude, infinity);
                Vector128<int> index = Avx.ConvertToVector128Int32WithTruncation(Vector256.Ceiling(product) & indexable);
                Unsafe.As<int, Vector128<int>>(ref Unsafe.Add(ref first, k)) = index;
                uint slow = (recheck & indexable).ExtractMostSignificantBits();
                while (slow != 0)
                {
                    int lane = System.Numerics.BitOperations.TrailingZeroCount(slow);
                    indices[k + lane] = MagnitudeIndexOf(points[k + lane].Value);
                    slow &= slow - 1;
                }
            }
        }

        for (; k < points.Length; k++)
        {
            indices[k] = MagnitudeIndexOf(points[k].Value);
        }
    }
}
