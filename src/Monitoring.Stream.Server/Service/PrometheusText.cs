using System.Globalization;
using System.Text;

namespace Monitoring.Stream.Server.Service;

/// <summary>Writes families and samples in the Prometheus text exposition format 0.0.4.</summary>
internal static class PrometheusText
{
    /// <summary>Writes a family's HELP and TYPE lines.</summary>
    public static void Family(TextWriter w, string name, string type, string help)
    {
        w.Write("# HELP ");
        w.Write(name);
        w.Write(' ');
        w.Write(help.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal));
        w.Write('\n');
        w.Write("# TYPE ");
        w.Write(name);
        w.Write(' ');
        w.Write(type);
        w.Write('\n');
    }

    /// <summary>Writes one sample.</summary>
    public static void Sample(TextWriter w, string name, ReadOnlySpan<(string Name, string Value)> labels, double value)
    {
        var line = new StringBuilder(name);
        if (labels.Length > 0)
        {
            line.Append('{');
            for (int i = 0; i < labels.Length; i++)
            {
                if (i > 0)
                {
                    line.Append(',');
                }

                line.Append(labels[i].Name).Append("=\"")
                    .Append(labels[i].Value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal))
                    .Append('"');
            }

            line.Append('}');
        }

        line.Append(' ');
        line.Append(double.IsNaN(value) ? "NaN" : double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : value.ToString("R", CultureInfo.InvariantCulture));
        line.Append('\n');
        w.Write(line.ToString());
    }
}
