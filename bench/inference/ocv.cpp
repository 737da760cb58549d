// The one C++ file of framegate: OpenCV DNN for bench/inference's comparison.
#include <stddef.h>
#include <stdio.h>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "ocv.h"

struct ocv_net {
    cv::dnn::Net net;
    std::vector<cv::String> outs;
    std::vector<cv::Mat> results;
};

ocv_net_t *ocv_create(const char *cfg, const char *weights, char *err, size_t errcap)
{
    try {
        ocv_net_t *n = new ocv_net_t;
        n->net = cv::dnn::readNetFromDarknet(cfg, weights);
        n->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        n->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        n->outs = n->net.getUnconnectedOutLayersNames();
        return n;
    } catch (const std::exception &e) {
        snprintf(err, errcap, "%s", e.what());
        return NULL;
    }
}

void ocv_set_threads(int n)
{
    cv::setNumThreads(n);
}

long ocv_predict(ocv_net_t *n, const float *input, int w, int h, char *err, size_t errcap)
{
    try {
        int dims[4] = {1, 3, h, w};
        // A header over the caller's buffer: no copy, and the same pixels darknet sees.
        cv::Mat blob(4, dims, CV_32F, const_cast<float *>(input));
        n->net.setInput(blob);
        n->net.forward(n->results, n->outs);
        long total = 0;
        for (const cv::Mat &m : n->results)
            total += (long)m.total();
        return total;
    } catch (const std::exception &e) {
        snprintf(err, errcap, "%s", e.what());
        return -1;
    }
}

void ocv_destroy(ocv_net_t *n)
{
    delete n;
}
