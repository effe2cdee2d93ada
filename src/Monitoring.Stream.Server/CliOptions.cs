using System.CommandLine;
using System.CommandLine.Parsing;

namespace Monitoring.Stream.Server;

/// <summary>Options shared by several commands, with the checks that make a bad value an error that names the option.</summary>
internal static class CliOptions
{
    /// <summary>A whole-number option between <paramref name="min"/> and <paramref name="max"/>.</summary>
    public static Option<long> Number(string name, string description, long defaultValue, long min, long max)
    {
        var option = new Option<long>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(result =>
        {
            long value = result.GetValueOrDefault<long>();
            if (value < min || value > max)
            {
                result.AddError($"option '{name}' takes a whole number from {min} to {max}, not {value}");
            }
        });
        return option;
    }

    /// <summary>An optional http or https URL.</summary>
    public static Option<Uri?> HttpUrl(string name, string description)
    {
        return new Option<Uri?>(name)
        {
            Description = description,
            CustomParser = result => Parse(name, result),
        };

        static Uri? Parse(string name, ArgumentResult result)
        {
            string text = result.Tokens.Count == 0 ? string.Empty : result.Tokens[0].Value;
            if (Uri.TryCreate(text, UriKind.Absolute, out Uri? url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps))
            {
                return url;
            }

            result.AddError($"option '{name}' takes an http or https URL, not '{text}'");
            return null;
        }
    }
}
