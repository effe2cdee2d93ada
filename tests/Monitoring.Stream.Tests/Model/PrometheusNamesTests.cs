using Monitoring.Stream.Model;

namespace Monitoring.Stream.Tests.Model;

public class PrometheusNamesTests
{
    [Theory]
    [InlineData("http_requests_total")]
    [InlineData("a")]
    [InlineData("_private")]
    [InlineData("job:rate5m")]
    [InlineData(":leading_colon")]
    public void IsValidMetricName_DataModelNames_True(string name) => Assert.True(PrometheusNames.IsValidMetricName(name));

    [Theory]
    [InlineData("")]
    [InlineData("1abc")]
    [InlineData("with space")]
    [InlineData("dash-ed")]
    [InlineData("unicodé")]
    [InlineData("dot.ted")]
    public void IsValidMetricName_Invalid_False(string name) => Assert.False(PrometheusNames.IsValidMetricName(name));

    [Theory]
    [InlineData("method", true)]
    [InlineData("_x", true)]
    [InlineData("a1", true)]
    [InlineData("__name__", false)]
    [InlineData("__reserved", false)]
    [InlineData("job:x", false)]
    [InlineData("9lives", false)]
    [InlineData("", false)]
    public void IsValidLabelName_Cases(string name, bool valid) => Assert.Equal(valid, PrometheusNames.IsValidLabelName(name));
}
